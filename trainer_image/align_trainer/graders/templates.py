"""OpenAI grader templates: `{{item.x}}`, `{{sample.output_text}}`, `{{sample.output_json.a.b}}`.

The `item` namespace is the dataset row; the `sample` namespace is the model's answer. `output_json` is
the answer parsed as JSON, present only when the answer is valid JSON (as in OpenAI's grader run API).
"""

from __future__ import annotations

import json
import re
from typing import Any

from align_api.graders import _TEMPLATE

_PATH_PART = re.compile(r"\.([A-Za-z_][\w-]*)|\[(\d+)\]")


class TemplateError(ValueError):
    """A template names a variable the item/sample does not have (OpenAI's invalid_variable_error)."""

    def __init__(self, message: str, *, sample_parse: bool = False):
        super().__init__(message)
        self.sample_parse = sample_parse


def make_sample(output_text: str, *, output_tools: list[Any] | None = None) -> dict[str, Any]:
    """The `sample` namespace for one model answer."""
    try:
        output_json = json.loads(output_text)
    except (TypeError, ValueError):
        output_json = None
    return {"output_text": output_text, "output_json": output_json, "output_tools": output_tools or [],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": output_text}}]}


def lookup(path: str, sample: dict[str, Any], item: dict[str, Any]) -> Any:
    """Value of `item.a[0].b` / `sample.output_json.x`; TemplateError when any step is missing."""
    namespace = re.match(r"[A-Za-z_]\w*", path)
    namespace = namespace.group(0) if namespace else ""
    rest = path[len(namespace):]
    roots = {"item": item, "sample": sample}
    if namespace not in roots:
        raise TemplateError(f"{{{{{path}}}}}: unknown namespace {namespace!r} (use item or sample)")
    value: Any = roots[namespace]
    walked = namespace
    for match in _PATH_PART.finditer(rest):
        key, index = match.group(1), match.group(2)
        if namespace == "sample" and walked == "sample.output_json" and value is None:
            raise TemplateError(f"{{{{{path}}}}}: the answer is not valid JSON", sample_parse=True)
        if key is not None:
            if not isinstance(value, dict) or key not in value:
                raise TemplateError(f"{{{{{path}}}}}: {walked} has no field {key!r}")
            value = value[key]
            walked += f".{key}"
        else:
            idx = int(index)
            if not isinstance(value, list) or idx >= len(value):
                raise TemplateError(f"{{{{{path}}}}}: {walked} has no element [{idx}]")
            value = value[idx]
            walked += f"[{idx}]"
    if walked == "sample.output_json" and value is None:
        raise TemplateError(f"{{{{{path}}}}}: the answer is not valid JSON", sample_parse=True)
    return value


def to_text(value: Any) -> str:
    """How a substituted value reads: strings as-is, everything else as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def render(template: str, sample: dict[str, Any], item: dict[str, Any]) -> str:
    """Substitute every `{{...}}` in `template`."""
    return _TEMPLATE.sub(lambda m: to_text(lookup(m.group(1), sample, item)), template)


def variables(template: str) -> list[str]:
    return [m.group(1) for m in _TEMPLATE.finditer(template)]
