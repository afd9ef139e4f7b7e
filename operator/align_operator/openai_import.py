"""OpenAI fine-tuning job request -> AlignmentJob manifest. Pure: a dict in, a manifest and notes out.

The request is what `POST /v1/fine_tuning/jobs` (or `client.fine_tuning.jobs.create(...)`) takes:
`model`, `training_file`, `validation_file`, `method: {type, supervised|dpo|reinforcement: {hyperparameters,
grader, response_format}}`, the deprecated top-level `hyperparameters`, `suffix`, `seed`, `metadata`,
`integrations`. Every field is accounted for in a Note: mapped, defaulted ("auto"), approximated or dropped.
docs/migrate-from-openai.md is the human-readable version of the same table.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping

from align_api import API_VERSION, KIND, Algorithm
from align_api.hyperparameters import WHY_NOT, Hyperparameters, accepted

from .openai_files import DATA_FORMATS, data_uri, data_warnings, sniff_format
from .openai_types import Kind, Note, Options, RequestError

__all__ = ["DATA_FORMATS", "Kind", "Note", "Options", "RequestError", "RL_ALGORITHMS", "convert", "dns_name",
           "open_model"]

#: OpenAI `method.type` -> our algorithm. Reinforcement fine-tuning samples several answers per prompt,
#: scores them with the grader and reinforces the above-average ones with a KL leash to the start model:
#: that is GRPO (group-relative advantages). ReFT would add an SFT warm-up the request has no data for.
METHODS: dict[str, Algorithm] = {"supervised": Algorithm.SFT, "dpo": Algorithm.DPO, "reinforcement": Algorithm.GRPO}
RL_ALGORITHMS = (Algorithm.GRPO, Algorithm.RLOO, Algorithm.REFT, Algorithm.PPO)

#: Open-weight stand-ins for OpenAI-hosted models (their weights cannot be downloaded): a model of a similar
#: role, not an equivalent. Longest matching prefix wins; `--model` overrides.
OPEN_MODELS: tuple[tuple[str, str], ...] = (
    ("gpt-4.1-nano", "Qwen/Qwen2.5-1.5B-Instruct"),
    ("gpt-4.1-mini", "Qwen/Qwen2.5-7B-Instruct"),
    ("gpt-4.1", "Qwen/Qwen2.5-32B-Instruct"),
    ("gpt-4o-mini", "Qwen/Qwen2.5-7B-Instruct"),
    ("gpt-4o", "Qwen/Qwen2.5-32B-Instruct"),
    ("gpt-3.5-turbo", "Qwen/Qwen2.5-1.5B-Instruct"),
    ("babbage-002", "Qwen/Qwen2.5-0.5B"),
    ("davinci-002", "Qwen/Qwen2.5-1.5B"),
    ("o4-mini", "Qwen/Qwen3-8B"),
    ("o3", "Qwen/Qwen3-32B"),
    ("o1", "Qwen/Qwen3-32B"),
    ("gpt-5", "Qwen/Qwen3-32B"),
)
DEFAULT_OPEN_MODEL = "Qwen/Qwen2.5-7B-Instruct"
_ANNOTATION_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
ANNOTATION_PREFIX = "openai.align.dev/"
#: Our defaults, read from the spec (never re-declared here).
BASE_LEARNING_RATE: float = Hyperparameters.model_fields["learning_rate"].default
BASE_NUM_GENERATIONS: int = Hyperparameters.model_fields["num_generations"].default
BASE_BATCH_SIZE: int = Hyperparameters.model_fields["batch_size"].default
#: DPO on LoRA adapters wants a smaller step than SFT: learning_rate_multiplier scales this base for method
#: dpo, and rates outside DPO_RANGE (what docs/migrate-from-openai.md recommends) are noted.
DPO_BASE_LEARNING_RATE = 1e-5
DPO_RANGE = (5e-6, 5e-5)
#: Algorithms whose batchSize counts completions in whole groups of numGenerations (validate rejects others).
GROUPED = frozenset({Algorithm.GRPO, Algorithm.RLOO})
#: Where an OpenAI-hosted judge keeps running when imported: OpenAI's own API, key from a Secret.
OPENAI_ENDPOINT = {"base_url": "https://api.openai.com/v1", "api_key": {"name": "openai", "key": "api-key"}}

def dns_name(text: str, limit: int = 50) -> str:
    """A DNS-1123 label (children get a '-trainer' suffix, so keep room under 63)."""
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    name = re.sub(r"-{2,}", "-", name)[:limit].strip("-")
    return name or "openai-import"


def open_model(openai_model: str) -> tuple[str, str | None]:
    """(our model, base OpenAI model when the request names a fine-tuned `ft:` model)."""
    base = openai_model.split(":")[1] if openai_model.startswith("ft:") and ":" in openai_model[3:] else None
    lookup = base or openai_model
    for prefix, replacement in sorted(OPEN_MODELS, key=lambda p: -len(p[0])):
        if lookup.startswith(prefix):
            return replacement, base
    return DEFAULT_OPEN_MODEL, base


def _auto(value: Any) -> bool:
    return value is None or value == "auto"


def _number(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestError(f"{field}: expected a number or 'auto', got {value!r}")
    return float(value)


def _judges(grader: dict[str, Any], path: str, notes: list[Note]) -> dict[str, Any]:
    """Model graders name a model: an OpenAI-hosted one keeps running on OpenAI's API (an endpoint with the key
    from Secret openai/api-key is added: validate rejects a hosted judge without one); others load locally."""
    try:
        from align_trainer.graders.judges import is_api_model_name
    except ImportError:  # alignctl without the trainer extra: assume the name is a model URI
        def is_api_model_name(model: str) -> bool:  # noqa: ARG001 - signature of the real one
            return False
    grader = dict(grader)
    if grader.get("type") in ("score_model", "label_model") and not grader.get("endpoint"):
        model = str(grader.get("model"))
        if is_api_model_name(model):
            grader["endpoint"] = dict(OPENAI_ENDPOINT)
            notes.append(Note(f"{path}.model", "approx", f"judge {model!r} is OpenAI-hosted: added endpoint "
                              f"{OPENAI_ENDPOINT['base_url']} with the key from Secret openai (key api-key): "
                              "kubectl create secret generic openai --from-literal=api-key=$OPENAI_API_KEY; or point "
                              "endpoint.base_url at your own OpenAI-compatible server (vLLM) serving an open judge"))
        else:
            notes.append(Note(f"{path}.model", "mapped", f"judge {model!r} is loaded locally as a model URI"))
    if grader.get("type") == "multi" and isinstance(grader.get("graders"), Mapping):
        grader["graders"] = {key: _judges(sub, f"{path}.graders.{key}", notes) if isinstance(sub, Mapping) else sub
                             for key, sub in grader["graders"].items()}
    return grader


def _hyperparameters(method: str, values: Mapping[str, Any], where: str, algorithm: Algorithm,
                     notes: list[Note]) -> tuple[dict[str, Any], dict[str, Any]]:
    """OpenAI hyperparameters -> (spec.hyperparameters, spec.evaluation) with one note per key."""
    hp: dict[str, Any] = {}
    evaluation: dict[str, Any] = {}
    for key, value in values.items():
        field = f"{where}.{key}"
        if _auto(value):
            notes.append(Note(field, "default", "'auto' -> our default for " + algorithm.value))
            continue
        if key == "n_epochs":
            hp["epochs"] = int(_number(value, field))
            notes.append(Note(field, "mapped", f"-> hyperparameters.epochs = {hp['epochs']}"))
        elif key == "batch_size":
            hp["batchSize"] = int(_number(value, field))
            notes.append(Note(field, "mapped", f"-> hyperparameters.batchSize = {hp['batchSize']}"))
        elif key == "learning_rate_multiplier":
            base = DPO_BASE_LEARNING_RATE if method == "dpo" else BASE_LEARNING_RATE
            hp["learningRate"] = float(f"{base * _number(value, field):.6g}")
            why = "our DPO base rate" if method == "dpo" else "our LoRA default"
            notes.append(Note(field, "approx", f"-> hyperparameters.learningRate = {hp['learningRate']} "
                              f"({value} x {why} {base}; OpenAI's base rate is unpublished)"))
            if method == "dpo" and not DPO_RANGE[0] <= hp["learningRate"] <= DPO_RANGE[1]:
                notes.append(Note(field, "approx", f"learningRate {hp['learningRate']} is outside "
                                  f"{DPO_RANGE[0]:g}-{DPO_RANGE[1]:g}, the usual range for DPO with LoRA: kept "
                                  "because the request asked for it; lower it if rewards/margins explode"))
        elif key == "beta" and method == "dpo":
            hp["beta"] = _number(value, field)
            notes.append(Note(field, "mapped", f"-> hyperparameters.beta = {hp['beta']}"))
        elif key == "compute_multiplier" and method == "reinforcement":
            generations = max(2, min(64, round(BASE_NUM_GENERATIONS * _number(value, field))))
            hp["numGenerations"] = generations
            notes.append(Note(field, "approx", f"-> hyperparameters.numGenerations = {generations} "
                              f"({value} x {BASE_NUM_GENERATIONS} samples per prompt: the exploration budget)"))
        elif key == "eval_interval" and method == "reinforcement" and "eval_steps" not in accepted(algorithm):
            notes.append(Note(field, "dropped", f"{value!r}: {algorithm.value} has no in-training evaluation "
                              f"({WHY_NOT.get(('eval_steps', algorithm), 'not accepted')})"))
        elif key == "eval_interval" and method == "reinforcement":
            hp["evalSteps"] = int(_number(value, field))
            notes.append(Note(field, "mapped", f"-> hyperparameters.evalSteps = {hp['evalSteps']}"))
        elif key == "eval_samples" and method == "reinforcement":
            evaluation["samples"] = int(_number(value, field))
            notes.append(Note(field, "approx", f"-> evaluation.samples = {evaluation['samples']} (prompts scored "
                              "by the grader after training; eval-split loss is logged every evalSteps)"))
        elif key == "reasoning_effort":
            notes.append(Note(field, "dropped", f"{value!r}: open models have no reasoning-effort switch; give "
                              "the policy room with hyperparameters.maxCompletionLength instead"))
        else:
            notes.append(Note(field, "dropped", f"{key}={value!r} is not an OpenAI {method} hyperparameter we know"))
    return hp, evaluation


def _method(request: Mapping[str, Any], notes: list[Note]) -> tuple[str, dict[str, Any], str]:
    """(method type, its configuration, the path of its configuration) with the legacy form folded in."""
    method = request.get("method") or {}
    if not isinstance(method, Mapping):
        raise RequestError("method must be an object {type, supervised|dpo|reinforcement: {...}}")
    kind = method.get("type") or "supervised"
    if kind not in METHODS:
        raise RequestError(f"method.type {kind!r} is not supported; expected one of {', '.join(METHODS)}")
    config = dict(method.get(kind) or {})
    # Tolerate the flattened form {type, hyperparameters, grader} some client code writes.
    for key in ("hyperparameters", "grader", "response_format"):
        if key in method and key not in config:
            config[key] = method[key]
    where = f"method.{kind}" if kind in method else "method"
    legacy = request.get("hyperparameters")
    if legacy:
        if kind == "supervised" and "hyperparameters" not in config:
            config["hyperparameters"] = legacy
            notes.append(Note("hyperparameters", "mapped", "deprecated top-level hyperparameters used as "
                              "method.supervised.hyperparameters"))
        else:
            notes.append(Note("hyperparameters", "dropped", "deprecated top-level hyperparameters ignored: "
                              f"method.{kind}.hyperparameters takes precedence"))
    return kind, config, where


def _model(openai_model: str, opts: Options, notes: list[Note]) -> str:
    if opts.model:
        notes.append(Note("model", "mapped", f"{openai_model} -> {opts.model} (--model)"))
        return opts.model
    if "/" in openai_model or "://" in openai_model:  # already an open model (hub id or URI)
        notes.append(Note("model", "mapped", f"-> {openai_model}"))
        return openai_model
    base, ft_base = open_model(openai_model)
    extra = (f"; {openai_model} is a fine-tuned OpenAI model whose weights cannot be exported, so training "
             f"starts from an open stand-in for {ft_base}") if ft_base else ""
    notes.append(Note("model", "approx", f"{openai_model} is OpenAI-hosted -> {base} (an open-weight model "
                      f"of a similar role; choose yours with --model){extra}"))
    return base


def _data(request: Mapping[str, Any], kind: str, opts: Options, notes: list[Note]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for split, field in (("train", "training_file"), ("eval", "validation_file")):
        if request.get(field):
            uri = data_uri(str(request[field]), field, opts, notes)
            data_warnings(uri, field, notes)
            data[split] = {"uri": uri, "format": sniff_format(uri, kind)}
    return data


def _reinforcement(config: Mapping[str, Any], where: str, spec: dict[str, Any], notes: list[Note]) -> None:
    if not config.get("grader"):
        raise RequestError(f"{where}.grader is required for reinforcement fine-tuning")
    # verbatim (spec.grader accepts OpenAI grader JSON as-is), plus an endpoint for OpenAI-hosted judges
    spec["grader"] = _judges(dict(config["grader"]), f"{where}.grader", notes)
    if '"base_url": "https://api.openai.com/v1"' in json.dumps(spec["grader"]):
        spec["secrets"] = {"judgeApiKey": dict(OPENAI_ENDPOINT["api_key"])}  # the operator sets the key from it
        notes.append(Note(f"{where}.grader", "approx", "-> spec.secrets.judgeApiKey = Secret openai, key api-key"))
    notes.append(Note(f"{where}.grader", "mapped", f"-> spec.grader (verbatim, type {config['grader'].get('type')})"))
    if config.get("response_format"):
        notes.append(Note(f"{where}.response_format", "dropped", "no schema-constrained decoding; ask for "
                          "JSON in the prompt: graders reading {{sample.output_json}} need valid JSON answers"))


def _request_fields(request: Mapping[str, Any], spec: dict[str, Any], annotations: dict[str, str],
                    notes: list[Note]) -> None:
    """suffix, metadata, integrations and anything unknown."""
    suffix = request.get("suffix")
    if suffix:
        clean = re.sub(r"[^A-Za-z0-9._-]", "-", str(suffix))[:64]
        spec["suffix"] = clean
        notes.append(Note("suffix", "mapped" if clean == suffix else "approx", f"-> spec.suffix = {clean}"))
    for key, value in (request.get("metadata") or {}).items():
        if _ANNOTATION_NAME.match(str(key)):
            annotations[f"{ANNOTATION_PREFIX}{key}"] = str(value)
            notes.append(Note(f"metadata.{key}", "mapped", f"-> annotation {ANNOTATION_PREFIX}{key}"))
        else:
            notes.append(Note(f"metadata.{key}", "dropped", "not a valid annotation name"))
    for index, integration in enumerate(request.get("integrations") or []):
        kind_name = integration.get("type", "?") if isinstance(integration, Mapping) else "?"
        notes.append(Note(f"integrations[{index}]", "dropped", f"{kind_name}: not wired; metrics go to "
                          "Prometheus (/metrics), status.metrics and metrics.jsonl (alignctl plot)"))
    for key in sorted(set(request) - REQUEST_FIELDS):
        notes.append(Note(key, "dropped", "not an OpenAI fine-tuning request field we know"))


def _whole_groups(hp: dict[str, Any], where: str, notes: list[Note]) -> None:
    """GRPO/RLOO count completions per step in whole groups of numGenerations: round batchSize up to one."""
    groups = hp.get("numGenerations", BASE_NUM_GENERATIONS)
    batch = hp.get("batchSize", BASE_BATCH_SIZE)
    if batch % groups:
        hp["batchSize"] = -(-batch // groups) * groups
        notes.append(Note(f"{where}.batch_size", "approx", f"batchSize {batch} -> {hp['batchSize']}: a step trains "
                          f"on whole groups of numGenerations = {groups} completions"))


REQUEST_FIELDS = frozenset({"model", "training_file", "validation_file", "method", "hyperparameters", "suffix",
                            "seed", "metadata", "integrations"})


def convert(request: Mapping[str, Any], opts: Options = Options()) -> tuple[dict[str, Any], list[Note]]:
    """The AlignmentJob manifest (a dict; validate it with align_api) and what happened to every field."""
    if not isinstance(request, Mapping) or "model" not in request or "training_file" not in request:
        raise RequestError("not an OpenAI fine-tuning job request: 'model' and 'training_file' are required")
    notes: list[Note] = []
    kind, config, where = _method(request, notes)
    algorithm = Algorithm(opts.rl_algorithm) if kind == "reinforcement" else METHODS[kind]
    notes.append(Note("method.type", "mapped", f"{kind} -> algorithm {algorithm.value}"))
    annotations = {f"{ANNOTATION_PREFIX}model": str(request["model"])}
    spec: dict[str, Any] = {"algorithm": algorithm.value,
                            "model": {"base": _model(str(request["model"]), opts, notes)},
                            "data": _data(request, kind, opts, notes)}
    hp, evaluation = _hyperparameters(kind, config.get("hyperparameters") or {}, f"{where}.hyperparameters",
                                      algorithm, notes)
    if request.get("seed") is not None:
        hp["seed"] = int(request["seed"])
        notes.append(Note("seed", "mapped", f"-> hyperparameters.seed = {hp['seed']}"))
    if hp:
        spec["hyperparameters"] = hp
    if algorithm in GROUPED:
        _whole_groups(hp, f"{where}.hyperparameters", notes)
        spec["hyperparameters"] = hp
    if kind == "reinforcement":
        _reinforcement(config, where, spec, notes)
        if evaluation:
            spec["evaluation"] = evaluation
    elif config.get("grader"):
        notes.append(Note(f"{where}.grader", "dropped", f"a grader is not used by {kind} training"))
    _request_fields(request, spec, annotations, notes)
    if opts.source:
        annotations[f"{ANNOTATION_PREFIX}source"] = opts.source
    suffix = request.get("suffix")
    name = opts.name or dns_name(str(suffix) if suffix else Path(opts.source or "openai-import").stem)
    manifest = {"apiVersion": API_VERSION, "kind": KIND,
                "metadata": {"name": name, "annotations": annotations}, "spec": spec}
    return manifest, notes
