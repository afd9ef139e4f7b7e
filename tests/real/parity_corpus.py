"""The validation parity corpus: manifests as a user writes them (YAML text), each with a unique name.

Every example, every invalid manifest of tests/unit/test_spec_invalid.py, and the YAML corners where a Python
reading and kubectl's reading differ: quoted numbers and booleans, snake_case keys, exponents without a dot,
one-letter booleans, sexagesimal-looking and date-looking strings, whole floats for integers.
"""

from __future__ import annotations

import re
import subprocess
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


WEBHOOK_DENIED = 'admission webhook "validate-spec.align.dev" denied the request: '


def invalid_manifests(directory: Path) -> dict[str, Path]:
    """Every manifest of the parity corpus that `alignctl validate` refuses, and the issue's two not in it (a
    70-character name, an output scheme we do not support), as files; case -> path."""
    directory.mkdir()
    cases = dict(corpus())
    dpo = yaml.safe_load((REPO / "examples" / "dpo.yaml").read_text())
    cases["invalid-name-of-70-characters"] = yaml.safe_dump({**dpo, "metadata": {"name": "n" * 70}})
    dpo["metadata"]["name"], dpo["spec"]["output"] = "invalid-output-scheme", {"uri": "ftp://host/out"}
    cases["invalid-output-scheme"] = yaml.safe_dump(dpo)
    from align_operator.cli.validate_cmd import validate_paths
    files = {}
    for case, text in cases.items():
        path = directory / f"{case}.yaml"
        path.write_text(text)
        if validate_paths([path])[1]:
            files[case] = path
        else:
            path.unlink()
    return files


def refused_at_apply(env: dict[str, str], files: dict[str, Path]) -> dict[str, str]:
    """`kubectl apply` of all the files at once; case -> kubectl's error for that file (absent: it was applied)."""
    for path in files.values():  # a manifest's own namespace exists, so only its content can be refused
        for ns in re.findall(r"(?m)^  namespace: *(\S+)", path.read_text()):
            subprocess.run(["kubectl", "create", "namespace", ns], env=env, capture_output=True, timeout=60)
    proc = subprocess.run(["kubectl", "apply", "-f", str(next(iter(files.values())).parent)], env=env,
                          capture_output=True, text=True, timeout=300)
    errors = re.split(r'(?=error validating "|Error from server|error when)', proc.stderr)
    return {case: next(e for e in errors if f'"{path}"' in e) for case, path in files.items()
            if any(f'"{path}"' in e for e in errors)}
