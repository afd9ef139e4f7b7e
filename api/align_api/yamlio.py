"""Read YAML the way kubectl does, so a manifest means the same thing to alignctl and to a cluster.

kubectl turns YAML into JSON with sigs.k8s.io/yaml, which decodes with go-yaml v2. Where that differs from
PyYAML's YAML 1.1 resolver, a manifest could validate here and mean something else on the cluster:
- `1e-5` is a float to go-yaml (any decimal with an exponent, dot or not); PyYAML's 1.1 float needs a dot,
  so it reads `1e-5` as the string "1e-5" (and a strict model then rejects a valid `learningRate: 1e-5`).
- `2024-01-01` stays a string when go-yaml decodes into interface{} (as sigs.k8s.io/yaml does); PyYAML makes
  a date, which is not JSON at all.
- `y`/`n` are booleans to go-yaml, strings to PyYAML; `1:30` is a string to go-yaml, the int 90 to PyYAML.
Null and the other YAML 1.1 booleans (`yes`/`no`/`on`/`off`) resolve alike in both.
"""

from __future__ import annotations

import re
from typing import Any, Iterator

import yaml

#: go-yaml v2's float: optional sign, digits with an optional dot or a leading dot, optional exponent;
#: plus the YAML 1.1 specials. Integers match the int resolver first (see _resolvers_without).
_GO_FLOAT = re.compile(r"""^(?:[-+]?(?:\.[0-9]+|[0-9]+\.[0-9]*)(?:[eE][-+]?[0-9]+)?
                           |[-+]?[0-9]+[eE][-+]?[0-9]+
                           |[-+]?\.(?:inf|Inf|INF)
                           |\.(?:nan|NaN|NAN))$""", re.X)
#: go-yaml v2's int: strconv.ParseInt(base 0) after dropping "_" (no YAML 1.1 sexagesimal `1:30`).
_GO_INT = re.compile(r"^[-+]?(?:0b[0-1_]+|0o?[0-7_]+|0x[0-9a-fA-F_]+|0|[1-9][0-9_]*)$")
#: go-yaml v2's booleans: YAML 1.1's plus the one-letter y/Y/n/N.
_GO_BOOL = re.compile(r"^(?:y|Y|yes|Yes|YES|n|N|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)$")
_FLOAT_TAG = "tag:yaml.org,2002:float"
_INT_TAG = "tag:yaml.org,2002:int"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_DROPPED = {_FLOAT_TAG, _INT_TAG, _BOOL_TAG, "tag:yaml.org,2002:timestamp"}


def _resolvers_without(tags: set[str]) -> dict[str | None, list[tuple[str, re.Pattern[str]]]]:
    return {first: [(tag, regexp) for tag, regexp in resolvers if tag not in tags]
            for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}


class KubeLoader(yaml.SafeLoader):
    """SafeLoader with go-yaml v2's float and timestamp rules (what kubectl sends to the API server)."""


KubeLoader.yaml_implicit_resolvers = _resolvers_without(_DROPPED)
# Order matters within a first character: bool, then int, then float (so `8` is an int, `8e0` a float).
KubeLoader.add_implicit_resolver(_BOOL_TAG, _GO_BOOL, list("yYnNtTfFoO"))
KubeLoader.add_implicit_resolver(_INT_TAG, _GO_INT, list("-+0123456789"))
KubeLoader.add_implicit_resolver(_FLOAT_TAG, _GO_FLOAT, list("-+0123456789."))


def _construct_bool(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> bool:
    return loader.construct_scalar(node).lower() in ("y", "yes", "true", "on")


KubeLoader.add_constructor(_BOOL_TAG, _construct_bool)


def load_all(text: str) -> list[Any]:
    """Every document of a YAML stream, as kubectl reads it."""
    return list(yaml.load_all(text, Loader=KubeLoader))  # noqa: S506 - KubeLoader is a SafeLoader


def load(text: str) -> Any:
    """One YAML document, as kubectl reads it."""
    return yaml.load(text, Loader=KubeLoader)  # noqa: S506 - KubeLoader is a SafeLoader


def compose_all(text: str) -> Iterator[yaml.Node]:
    """The node trees (with line marks) of every document, resolved as load_all resolves them."""
    return yaml.compose_all(text, Loader=KubeLoader)
