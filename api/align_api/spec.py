"""AlignmentJob: the one definition of what an alignment job is."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .common import SpecModel, is_job_uri
from .algorithms import (BETA_ALGORITHMS, ITERATIVE_ALGORITHMS, ONLINE_ALGORITHMS, REFERENCE_ALGORITHMS, TABLE,
                         loop_of, variant_of)
from .constants import TPO_DEFAULT_THOUGHT_PROMPT, Algorithm
from .data import DataSpec
from .evaluation import Evaluation
from .graders import Grader, iter_graders
from .hyperparameters import (GENERATIVE, LOSS_TYPES, ROUND_ONLY, SMOOTHED_CPO_LOSSES, SMOOTHED_DPO_LOSSES, WHY_NOT,
                              Hyperparameters, algorithms_for, used_by)
from .model import ModelSpec
from .runtime import Checkpoints, Metrics, Output, Promote, Resources, RunPolicy, Secrets
from .status import Status

#: Algorithms whose data are preference pairs (or unpaired labels, KTO) and which algorithm needs what.
NEEDS_GRADER = ONLINE_ALGORITHMS


class AlignmentJobSpec(SpecModel):
    """What to align, with what data and how."""

    algorithm: Algorithm = Field(description="Alignment algorithm: " + ", ".join(a.value for a in Algorithm) + ".")
    model: ModelSpec = Field(description="Base model, policy adapter and reference.")
    data: DataSpec = Field(description="Training and evaluation data.")
    grader: Grader | None = Field(default=None, description="Reward for online algorithms, iterative dpo/rpo (rounds) and rpo's reward gaps: an OpenAI grader or a reward_model.")
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters, description="Training hyperparameters.")
    evaluation: Evaluation | None = Field(default=None, description="Post-training evaluation and gates.")
    resources: Resources = Field(default_factory=Resources, description="Compute for the trainer pods.")
    checkpoints: Checkpoints = Field(default_factory=Checkpoints, description="Checkpointing and resume.")
    output: Output = Field(default_factory=Output, description="Where the trained adapter is written.")
    promote: Promote | None = Field(default=None, description=(
        "Publish the checkpoint of this step as the final adapter (instead of the last step's); see Promote."))
    run_policy: RunPolicy = Field(default_factory=RunPolicy, description="Job lifecycle: retries, deadline, suspend, queue.")
    secrets: Secrets | None = Field(default=None, description="Secret references (never literal values).")
    metrics: Metrics = Field(default_factory=Metrics, description="Trainer metrics endpoint.")
    suffix: str | None = Field(default=None, max_length=64, pattern=r"^[a-zA-Z0-9._-]*$",
                               description="Free-form suffix recorded in the model card (OpenAI's `suffix`).")

    @model_validator(mode="after")
    def _cross_field(self) -> "AlignmentJobSpec":
        algo = self.algorithm
        hp = self.hyperparameters
        if algo in ITERATIVE_ALGORITHMS and hp.rounds is None:
            for name in sorted(set(ROUND_ONLY) & hp.model_fields_set):
                alias = Hyperparameters.model_fields[name].alias or name
                raise ValueError(f"[hyperparameters.{alias}] is not used by algorithm {algo.value!r} unless "
                                 "hyperparameters.rounds is set (iterative rounds sample with it)")
        variant = variant_of(algo, hp)
        for name in sorted(hp.model_fields_set):
            users = algorithms_for(name)
            alias = Hyperparameters.model_fields[name].alias or name
            why = f": {WHY_NOT[name, algo]}" if (name, algo) in WHY_NOT else ""
            if algo not in users:
                raise ValueError(f"[hyperparameters.{alias}] is not used by algorithm {algo.value!r}{why} "
                                 f"(used by: {', '.join(a.value for a in users)})")
            if not used_by(name, algo, hp) and variant is not None:
                setting = Hyperparameters.model_fields[variant.setting].alias or variant.setting
                others = [v.value for v in TABLE[algo].variants if name not in v.ignores]
                raise ValueError(f"[hyperparameters.{alias}] is not used by {algo.value} with "
                                 f"hyperparameters.{setting}: {variant.value}{why} (only with {setting}: "
                                 f"{' or '.join(others)})")
        # tpo checks maxLength against its thought prompt below (and in the trainer, with the tokenizer)
        generates = (algo in GENERATIVE and algo != Algorithm.TPO) or \
            (algo in ITERATIVE_ALGORITHMS and hp.rounds is not None)
        if generates and hp.max_length - hp.max_completion_length < 4:
            raise ValueError(f"[hyperparameters.maxLength] ({hp.max_length}) must exceed maxCompletionLength "
                             f"({hp.max_completion_length}) by at least 4: {algo.value} cuts prompts to "
                             "maxLength - maxCompletionLength tokens so that prompt + completion fit maxLength")
        smoothed = {Algorithm.DPO: SMOOTHED_DPO_LOSSES, Algorithm.CPO: SMOOTHED_CPO_LOSSES}.get(algo)
        if smoothed and hp.label_smoothing and (hp.loss_type or "sigmoid") not in smoothed:
            raise ValueError(f"[hyperparameters.labelSmoothing] is not used by {algo.value}'s lossType "
                             f"{hp.loss_type or 'sigmoid'!r} (TRL's formula has no label noise); it is used with "
                             f"lossType {', '.join(smoothed)}")
        if hp.loss_type is not None:
            allowed = LOSS_TYPES.get(algo, ())
            if hp.loss_type not in allowed:
                raise ValueError(f"[hyperparameters.lossType] {hp.loss_type!r} is not valid for {algo.value}; "
                                 f"allowed: {', '.join(allowed)}")
        if (algo in (Algorithm.GRPO, Algorithm.RLOO) or (algo == Algorithm.REFT and hp.rl_stage == "grpo")) and \
                (hp.batch_size * hp.gradient_accumulation_steps) % hp.num_generations:
            raise ValueError(f"[hyperparameters.batchSize] x gradientAccumulationSteps "
                             f"({hp.batch_size * hp.gradient_accumulation_steps}) must be a multiple of numGenerations "
                             f"({hp.num_generations}): each step trains on whole groups of completions")
        if algo == Algorithm.TPO:
            # a lower bound on the wrapped prompt's tokens (tokenizers spend at least one per word; the query
            # adds one or more); the trainer checks the exact count with the tokenizer before any training
            words = len((hp.thought_prompt or TPO_DEFAULT_THOUGHT_PROMPT).replace("{query}", " ").split()) + 1
            if hp.max_length <= words:
                raise ValueError(f"[hyperparameters.maxLength] ({hp.max_length}) cannot hold tpo's thought prompt "
                                 f"(hyperparameters.thoughtPrompt: at least {words} tokens with the query) and an "
                                 "answer; raise maxLength or shorten thoughtPrompt")
        if algo in BETA_ALGORITHMS and not hp.beta > 0:
            raise ValueError("[hyperparameters.beta] must be > 0 for the DPO family")
        iterative = algo in ITERATIVE_ALGORITHMS and hp.rounds is not None
        if iterative and self.grader is None:
            raise ValueError(f"[grader] is required for iterative {algo.value} (hyperparameters.rounds): it scores "
                             "the policy's samples of each round")
        if algo in NEEDS_GRADER and self.grader is None:
            raise ValueError(f"[grader] is required for algorithm {algo.value!r}: an online algorithm needs a "
                             "grader, a judge (score_model/label_model) or a reward_model")
        if algo == Algorithm.RLAIF and self.grader is not None:
            if self.grader.type not in ("score_model", "label_model", "multi"):
                raise ValueError("[grader.type] rlaif needs an AI judge (score_model or label_model), got "
                                 f"{self.grader.type!r}; use ppo or grpo for rule-based graders")
        if algo not in ONLINE_ALGORITHMS and algo not in (Algorithm.REWARD, Algorithm.RPO) and not iterative \
                and self.grader is not None and self.evaluation is None:
            raise ValueError(f"[grader] is not used by algorithm {algo.value!r} (offline); move it to "
                             "evaluation.grader to score the policy after training")
        if algo == Algorithm.REWARD and self.grader is not None:
            raise ValueError("[grader] is not used by algorithm 'reward' (it trains a reward model from pairs)")
        if self.model.reference.kind != "base" and algo not in REFERENCE_ALGORITHMS:
            raise ValueError(f"[model.reference.kind] is not used by algorithm {algo.value!r} (reference-free)")
        if self.model.reference.kind == "precomputed" and (algo not in (Algorithm.DPO, Algorithm.KTO, Algorithm.RPO)
                                                           or iterative):
            raise ValueError("[model.reference.kind] 'precomputed' works with offline data only (dpo, kto, rpo; "
                             "not with rounds)")
        if self.resources.gpus_per_node == 0 and self.model.quantization is not None:
            raise ValueError("[model.quantization] needs GPUs (bitsandbytes 4/8-bit runs on CUDA); set resources.gpusPerNode >= 1")
        if self.model.attention == "flash_attention_2" and self.resources.gpus_per_node == 0:
            raise ValueError("[model.attention] flash_attention_2 needs GPUs; use sdpa or auto on CPU")
        if hp.vllm != "off" and self.resources.gpus_per_node == 0:
            raise ValueError("[hyperparameters.vllm] needs GPUs (vLLM runs on CUDA); set resources.gpusPerNode >= 1 "
                             "or vllm: off")
        if (hp.vllm == "server") != (hp.vllm_server_url is not None):
            raise ValueError("[hyperparameters.vllmServerUrl] is required with vllm: server and only used with it")
        if hp.liger_kernel and self.resources.gpus_per_node == 0:
            raise ValueError("[hyperparameters.ligerKernel] needs GPUs (Triton kernels); set resources.gpusPerNode >= 1")
        if self.resources.strategy == "fsdp" and loop_of(algo, hp) == "own":
            variant = variant_of(algo, hp)
            setting = variant and (Hyperparameters.model_fields[variant.setting].alias or variant.setting)
            which = algo.value + (f" with hyperparameters.{setting}: {variant.value}" if variant else "")
            raise ValueError(f"[resources.strategy] fsdp is for the TRL-based algorithms; {which} runs its own "
                             "loop with ddp (a LoRA policy fits every rank)")
        if self.promote is not None and not self.checkpoints.volume:
            raise ValueError("[promote] needs spec.checkpoints.volume: checkpoints on an emptyDir go with the pod, "
                             "so there is no checkpoint left to promote")
        if self.evaluation and self.evaluation.scorer in ("grader", "judge") and self.evaluation.grader is None \
                and self.grader is None and self.evaluation.enabled is not False and algo != Algorithm.REWARD:
            raise ValueError("[evaluation.grader] evaluation needs a grader: set evaluation.grader or spec.grader "
                             "(or evaluation.enabled: false)")
        return self

    def upstream_jobs(self) -> dict[str, str]:
        """Fields that name another AlignmentJob's output: {field path: job name}."""
        refs: dict[str, str] = {}
        if is_job_uri(self.model.adapter.init):
            refs["spec.model.adapter.init"] = self.model.adapter.init[6:]  # type: ignore[index]
        if is_job_uri(self.model.reference.adapter):
            refs["spec.model.reference.adapter"] = self.model.reference.adapter[6:]  # type: ignore[index]
        for path, grader in (("spec.grader", self.grader),
                             ("spec.evaluation.grader", self.evaluation.grader if self.evaluation else None)):
            if grader is None:
                continue
            for sub in iter_graders(grader):
                if sub.type == "reward_model" and is_job_uri(sub.model):
                    refs[f"{path}({sub.name}).model"] = sub.model[6:]
        return refs


class ObjectMeta(BaseModel):
    """The parts of Kubernetes ObjectMeta a manifest may carry."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    name: str | None = Field(default=None, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
                             description="Job name (DNS-1123 label; children are named <name>-trainer).")
    generate_name: str | None = Field(default=None, alias="generateName")
    namespace: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None

    @model_validator(mode="after")
    def _named(self) -> "ObjectMeta":
        if not self.name and not self.generate_name:
            raise ValueError("metadata.name is required")
        return self


class AlignmentJob(BaseModel):
    """An AlignmentJob custom resource."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    api_version: Literal["align.dev/v1alpha1"] = Field(alias="apiVersion", description="align.dev/v1alpha1")
    kind: Literal["AlignmentJob"] = Field(description="AlignmentJob")
    metadata: ObjectMeta = Field(description="Standard object metadata.")
    spec: AlignmentJobSpec = Field(description="Desired state.")
    status: Status | None = Field(default=None, description="Observed state (written by the operator).")

    def to_dict(self, *, defaults: bool = False) -> dict[str, Any]:
        """The manifest as a dict; `defaults=True` resolves every default (what the trainer receives)."""
        data = self.model_dump(by_alias=True, exclude_none=True, exclude_unset=not defaults, mode="json")
        if defaults:
            # Resolved defaults carry only the hyperparameters this algorithm uses, so the document
            # validates again unchanged (setting an unused hyperparameter is an error).
            algo = self.spec.algorithm
            data["spec"]["hyperparameters"] = {
                (field.alias or name): data["spec"]["hyperparameters"][field.alias or name]
                for name, field in Hyperparameters.model_fields.items()
                if used_by(name, algo, self.spec.hyperparameters)
                and (field.alias or name) in data["spec"]["hyperparameters"]
            }
        return data

    @property
    def name(self) -> str:
        return self.metadata.name or ""

