"""tests/mutations.py stays in step with the source: every breakage still applies to exactly one place and
names tests that exist (scripts/mutation_check.py then shows that each one is caught)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.mutations import MUTATIONS, Mutation

REPO = Path(__file__).resolve().parents[2]


def test_pieces_are_unique() -> None:
    assert len({m.piece for m in MUTATIONS}) == len(MUTATIONS)


@pytest.mark.parametrize("mutation", MUTATIONS, ids=lambda m: m.piece)
def test_mutation_applies_once_and_stays_python(mutation: Mutation) -> None:
    source = (REPO / mutation.path).read_text()
    assert source.count(mutation.old) == 1, f"{mutation.path}: {mutation.old!r}"
    ast.parse(source.replace(mutation.old, mutation.new))  # the broken tree must still import


@pytest.mark.parametrize("mutation", MUTATIONS, ids=lambda m: m.piece)
def test_named_tests_exist(mutation: Mutation) -> None:
    for node in mutation.tests:
        path, name = node.split("::")
        name = name.split("[")[0]  # a parametrized case: its function
        tree = ast.parse((REPO / path).read_text())
        assert name in {f.name for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))}, node
