"""The validation parity corpus: manifests as a user writes them (YAML text), each with a unique name.

Every example, every invalid manifest of tests/unit/test_spec_invalid.py, and the YAML corners where a Python
reading and kubectl's reading differ: quoted numbers and booleans, snake_case keys, exponents without a dot,
one-letter booleans, sexagesimal-looking and date-looking strings, whole floats for integers.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tests.unit.test_spec_invalid import CASES, GRPO, _build

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted([*REPO.glob("examples/*.yaml"), *REPO.glob("examples/pipelines/*.yaml"),
                   *REPO.glob("examples/gitops/jobs/*.yaml")])
#: Cases whose point is the name itself keep it.
_NAME_CASES = {"no-name", "bad-name"}

_HEAD = """apiVersion: align.dev/v1alpha1
kind: AlignmentJob
metadata:
  name: {name}
spec:
  algorithm: {algorithm}
  model:
    base: builtin://tiny
{model}  data:
    train: {{uri: data/pairs.jsonl}}
"""

#: (id, lines under spec.model, lines under spec) -- YAML text exactly as written, never re-serialised.
_CORNERS: list[tuple[str, str, str]] = [
    ("lr-exponent", "", "  hyperparameters: {learningRate: 1e-5}\n"),
    ("lr-exponent-upper", "", "  hyperparameters: {learningRate: 5E-6, beta: 1e-1}\n"),
    ("lr-quoted", "", "  hyperparameters: {learningRate: '1e-5'}\n"),
    ("lr-exponent-dot", "", "  hyperparameters: {learningRate: 1.0e-5}\n"),
    ("batch-quoted", "", '  hyperparameters:\n    batchSize: "8"\n'),
    ("epochs-quoted", "", "  hyperparameters: {epochs: '1'}\n"),
    ("epochs-whole-float", "", "  hyperparameters: {epochs: 2.0}\n"),
    ("epochs-fraction", "", "  hyperparameters: {epochs: 1.5}\n"),
    ("epochs-hex", "", "  hyperparameters: {epochs: 0x2}\n"),
    ("beta-y", "", "  hyperparameters: {beta: y}\n"),
    ("snake-learning-rate", "", "  hyperparameters:\n    learning_rate: 1.0e-5\n"),
    ("snake-batch-size", "", "  hyperparameters: {batch_size: 8}\n"),
    ("snake-run-policy", "", "  run_policy: {backoffLimit: 1}\n"),
    ("snake-target-modules", "    adapter: {target_modules: [q_proj]}\n", ""),
    ("snake-trust-remote-code", "    trust_remote_code: true\n", ""),
    ("trust-quoted", "    trustRemoteCode: 'true'\n", ""),
    ("trust-yes", "    trustRemoteCode: yes\n", ""),
    ("trust-y", "    trustRemoteCode: y\n", ""),
    ("revision-y", "    revision: y\n", ""),
    ("revision-sexagesimal", "    revision: 1:30\n", ""),
    ("revision-date", "    revision: 2024-01-01\n", ""),
    ("revision-number", "    revision: 1.0\n", ""),
    ("bits-quoted", "    quantization: {bits: '4'}\n", "  resources: {gpusPerNode: 1}\n"),
    ("rank-whole-float", "    adapter: {r: 16.0, dropout: 5e-2}\n", ""),
    ("rank-quoted", "    adapter: {r: '16'}\n", ""),
    ("nodes-quoted", "", "  resources: {nodes: '1'}\n"),
]


def _named(doc: dict, name: str) -> dict:
    doc.setdefault("metadata", {})["name"] = name
    return doc


def corpus() -> dict[str, str]:
    """id -> YAML text of one AlignmentJob."""
    out: dict[str, str] = {}
    for path in EXAMPLES:
        text = path.read_text()
        # Unique names; namespaces as written (the parity test creates them).
        out[f"example-{path.stem}"] = re.sub(r"(?m)^(  name:) *\S+", rf"\1 example-{path.stem}", text, count=1)
    for case, mutations, _path, _words in CASES:
        doc = _build(mutations)
        if case not in _NAME_CASES:
            _named(doc, f"invalid-{case}")
        out[f"invalid-{case}"] = yaml.safe_dump(doc, sort_keys=False)
    for case, model, spec in _CORNERS:
        out[f"yaml-{case}"] = _HEAD.format(name=f"yaml-{case}", algorithm="dpo", model=model) + spec
    grpo = _build(GRPO)
    out["valid-grpo-grader"] = yaml.safe_dump(_named(grpo, "valid-grpo-grader"), sort_keys=False)
    return out
