"""Helm's linter (through helm-sdkpy) on the chart, and the chart's documentation contract: a `##` comment on
every value, a draft-07 values.schema.json that matches values.yaml, and a README generated from both."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.chart_support import CHART, REPO, helm_sdk_available, run_helm_sdk

sys.path.insert(0, str(REPO / "scripts"))
import gen_chart_readme  # noqa: E402

needs_helm = pytest.mark.skipif(not helm_sdk_available(), reason="helm-sdkpy is not installed: run scripts/setup.sh")


def _lint(chart: Path) -> dict[str, Any]:
    proc = run_helm_sdk(["lint", str(chart)])
    return {"rc": proc.returncode, **json.loads(proc.stdout), "stderr": proc.stderr}


@needs_helm
def test_helm_lint_passes_without_errors_or_warnings() -> None:
    report = _lint(CHART)
    assert report["rc"] == 0 and report["errors"] == 0, report
    assert report["charts"] == 1
    severities = {m["severity"] for m in report["messages"]}
    assert not severities & {"ERROR", "WARNING"}, report["messages"]


@needs_helm
def test_helm_lint_catches_a_broken_template(tmp_path: Path) -> None:
    broken = tmp_path / "align-operator"
    shutil.copytree(CHART, broken)
    (broken / "templates" / "broken.yaml").write_text("kind: ConfigMap\nmetadata: {{ .Values.nope.deeper }}\n")
    report = _lint(broken)
    assert report["rc"] == 1 and any(m["severity"] == "ERROR" for m in report["messages"])
    assert "nil pointer" in report["stderr"] or "nope" in report["stderr"]


def test_every_value_has_a_comment() -> None:
    assert gen_chart_readme.undocumented() == []


def test_readme_is_generated_from_values() -> None:
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "gen_chart_readme.py"), "--check"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    readme = (CHART / "README.md").read_text()
    for value in gen_chart_readme.parse((CHART / "values.yaml").read_text()):
        assert f"`{gen_chart_readme._key(value.path)}`" in readme


def test_readme_parser_sees_comments_and_skips_list_items() -> None:
    text = "## top\na:\n  ## inner\n  b: 1\n  ## a list\n  c:\n    - d: 2\n      e: 3\n  ## after\n  f: x\n"
    parsed = {v.path: v.description for v in gen_chart_readme.parse(text)}
    assert parsed == {("a",): "top", ("a", "b"): "inner", ("a", "c"): "a list", ("a", "f"): "after"}


def _schema() -> dict[str, Any]:
    return json.loads((CHART / "values.schema.json").read_text())


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    return schema["definitions"][ref.rsplit("/", 1)[-1]] if ref else node


def _schema_paths(schema: dict[str, Any], node: dict[str, Any], prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    node = _resolve(schema, node)
    out = set()
    for key, child in (node.get("properties") or {}).items():
        out.add(prefix + (key,))
        out |= _schema_paths(schema, child, prefix + (key,))
    return out


def test_schema_is_draft7_and_accepts_the_defaults() -> None:
    import jsonschema

    schema = _schema()
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.Draft7Validator(schema).validate(yaml.safe_load((CHART / "values.yaml").read_text()))
    assert schema["additionalProperties"] is False


def test_schema_describes_every_value_and_nothing_else() -> None:
    schema = _schema()
    in_values = {v.path for v in gen_chart_readme.parse((CHART / "values.yaml").read_text())}
    # Free-form maps (labels, annotations, selectors) have no fixed keys in the schema.
    free_form = {("grafanaDashboard", "labels", "grafana_dashboard"),
                 ("trainer", "podSelector", "matchLabels", "app.kubernetes.io/name"),
                 ("trainer", "podSelector", "matchLabels", "app.kubernetes.io/component")}
    missing = in_values - _schema_paths(schema, schema) - free_form
    assert not missing, f"values without a schema entry: {sorted(missing)}"
    top_schema = set(schema["properties"])
    top_values = {p[0] for p in in_values}
    assert top_schema == top_values
