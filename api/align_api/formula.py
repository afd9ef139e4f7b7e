"""Safe arithmetic formulas for `multi` graders' `calculate_output` and evaluation gates.

Formulas are parsed with :mod:`ast` and evaluated by walking the tree: only numbers, names, + - * / ** %,
unary +/-, parentheses, comparisons (gates only) and a few pure functions are allowed. Nothing is ever
passed to :func:`eval`.
"""

from __future__ import annotations

import ast
import math
import operator
from typing import Callable, Mapping

_BINOPS: dict[type, Callable[[float, float], float]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.Pow: operator.pow, ast.Mod: operator.mod,
}
_UNARY: dict[type, Callable[[float], float]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_CMP: dict[type, Callable[[float, float], bool]] = {
    ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
    ast.Eq: operator.eq, ast.NotEq: operator.ne,
}
FUNCTIONS: dict[str, Callable[..., float]] = {
    "min": min, "max": max, "abs": abs, "sqrt": math.sqrt, "log": math.log, "exp": math.exp,
    "floor": math.floor, "ceil": math.ceil, "round": round,
}


class FormulaError(ValueError):
    pass


def parse(formula: str, names: set[str] | None, *, comparison: bool = False) -> ast.Expression:
    """Parse and check a formula; `names` restricts the variables (None = any identifier)."""
    if not formula or len(formula) > 1000:
        raise FormulaError("formula must be 1-1000 characters")
    try:
        tree = ast.parse(formula, mode="eval")
    except SyntaxError as exc:
        raise FormulaError(f"not a valid formula: {exc.msg} at column {exc.offset}") from None
    _check(tree.body, names, comparison=comparison, top=True)
    return tree


def _check(node: ast.AST, names: set[str] | None, *, comparison: bool, top: bool = False) -> None:
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise FormulaError(f"only numeric constants are allowed, got {node.value!r}")
    elif isinstance(node, ast.Name):
        if names is not None and node.id not in names:
            allowed = ", ".join(sorted(names)) or "(none)"
            raise FormulaError(f"unknown name {node.id!r}; allowed names: {allowed}")
    elif isinstance(node, ast.BinOp):
        if type(node.op) not in _BINOPS:
            raise FormulaError(f"operator {type(node.op).__name__} is not allowed; use + - * / ** %")
        _check(node.left, names, comparison=comparison)
        _check(node.right, names, comparison=comparison)
    elif isinstance(node, ast.UnaryOp):
        if type(node.op) not in _UNARY:
            raise FormulaError(f"operator {type(node.op).__name__} is not allowed")
        _check(node.operand, names, comparison=comparison)
    elif isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS or node.keywords:
            raise FormulaError("only these functions may be called: " + ", ".join(sorted(FUNCTIONS)))
        for arg in node.args:
            _check(arg, names, comparison=comparison)
    elif isinstance(node, ast.Compare) and comparison and top:
        if any(type(op) not in _CMP for op in node.ops):
            raise FormulaError("comparisons must use < <= > >= == !=")
        _check(node.left, names, comparison=comparison)
        for comp in node.comparators:
            _check(comp, names, comparison=comparison)
    else:
        what = "a comparison at the top level" if comparison else "arithmetic"
        raise FormulaError(f"{type(node).__name__} is not allowed; a formula is {what} over names and numbers")


def evaluate(formula: str | ast.Expression, values: Mapping[str, float], *, comparison: bool = False) -> float | bool:
    tree = parse(formula, set(values), comparison=comparison) if isinstance(formula, str) else formula
    return _eval(tree.body, values)


def _eval(node: ast.AST, values: Mapping[str, float]) -> float | bool:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return float(values[node.id])
    if isinstance(node, ast.BinOp):
        left, right = _eval(node.left, values), _eval(node.right, values)
        if isinstance(node.op, ast.Pow) and abs(right) > 64:
            raise FormulaError("exponent too large")
        try:
            return _BINOPS[type(node.op)](left, right)
        except ZeroDivisionError:
            return math.nan
    if isinstance(node, ast.UnaryOp):
        return _UNARY[type(node.op)](_eval(node.operand, values))
    if isinstance(node, ast.Call):
        return FUNCTIONS[node.func.id](*(_eval(a, values) for a in node.args))  # type: ignore[union-attr]
    if isinstance(node, ast.Compare):
        left = _eval(node.left, values)
        for op, comp in zip(node.ops, node.comparators):
            right = _eval(comp, values)
            if not _CMP[type(op)](left, right):
                return False
            left = right
        return True
    raise FormulaError(f"cannot evaluate {type(node).__name__}")


def names_in(formula: str) -> set[str]:
    tree = ast.parse(formula, mode="eval")
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} - set(FUNCTIONS)
