"""The operator is the operator and nothing else: `align_operator` (what operator/Dockerfile installs) holds no
local-cluster code and never imports kmock; `alignctl local` reaches the local cluster (align_localcluster, the
`local` extra) lazily and says which extra to install when it is absent."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LOCAL_ONLY = ("kmock", "align_localcluster")

#: Imports every module of align_operator with the local cluster and kmock made unimportable, then reports what
#: got imported: a module that needs them fails here by name, and one that merely drags them in is listed.
_IMPORT_ALL = r"""
import importlib, json, pkgutil, sys
blocked = sys.argv[1].split(",")
for name in blocked:
    sys.modules[name] = None  # `import name` now raises ModuleNotFoundError
import align_operator
failed = {}
for info in pkgutil.walk_packages(align_operator.__path__, "align_operator."):
    if info.name.endswith("__main__"):
        continue
    try:
        importlib.import_module(info.name)
    except ImportError as exc:
        failed[info.name] = repr(exc)
loaded = sorted(m for m in sys.modules if sys.modules[m] is not None and m.split(".")[0] in blocked)
print(json.dumps({"failed": failed, "loaded": loaded, "count": len([m for m in sys.modules if m.startswith("align_operator")])}))
"""


def _child(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}, check=False)


def test_every_operator_module_imports_without_the_local_cluster_or_kmock() -> None:
    import json

    result = _child(_IMPORT_ALL, ",".join(LOCAL_ONLY))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["failed"] == {}, f"operator modules that need the local cluster: {report['failed']}"
    assert report["loaded"] == []
    assert report["count"] > 30  # the walk did reach the handlers, the CLI, the renderers


def test_no_local_cluster_code_in_the_operator_package() -> None:
    """Source-level: nothing under operator/align_operator names kmock, and the local cluster is named only by the
    CLI's lazy import (cli/local_cmd.py)."""
    offenders = []
    for path in sorted((REPO / "operator" / "align_operator").rglob("*.py")):
        text = path.read_text()
        if re.search(r"^\s*(from|import)\s+kmock\b", text, re.M):
            offenders.append(f"{path.relative_to(REPO)}: imports kmock")
        if re.search(r"^\s*(from|import)\s+align_localcluster\b", text, re.M):
            offenders.append(f"{path.relative_to(REPO)}: imports align_localcluster at module level or in a function")
    assert offenders == []
    assert not (REPO / "operator" / "align_operator" / "sandbox").exists()


def test_the_operator_image_installs_neither_the_local_extra_nor_kmock() -> None:
    dockerfile = (REPO / "operator" / "Dockerfile").read_text()
    installs = re.findall(r'pip install[^\n]*"\.\[([^\]]*)\]"', dockerfile)
    assert installs == ["operator"], installs  # one project install, the operator extra alone
    assert not re.search(r"^COPY\s+localcluster", dockerfile, re.M)
    pins = (REPO / "deploy" / "images" / "operator-constraints.txt").read_text()
    assert not re.search(r"^kmock==", pins, re.M)
    # The operator extra's whole requirement closure (what `pip install ".[operator]"` brings) has no kmock.
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        from gen_image_constraints import image_closure
    finally:
        sys.path.remove(str(REPO / "scripts"))
    operator = image_closure(("operator",), "3.11")
    assert "kopf" in operator and "kmock" not in operator
    assert "kmock" in image_closure(("local",), "3.11")  # the control: the local extra does bring it


def test_alignctl_local_without_the_local_extra_names_the_extra() -> None:
    code = ("import sys; sys.modules['kmock'] = None\n"
            "from align_operator.cli import main\n"
            "sys.argv = ['alignctl', 'local', 'status', '--home', sys.argv[1]]; main()")
    result = _child(code, str(REPO / ".no-such-home"))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "kmock is not installed" in result.stderr
    assert "pip install 'align-operator[local]'" in result.stderr
    assert "Traceback" not in result.stderr
