"""A small, safe expression language for custom rules: parsed once, evaluated per event.

Expressions use Python's *syntax* (parsed with :mod:`ast`), never Python's
evaluation: the tree is checked against a short whitelist and compiled into
closures over a variables mapping. There are no attributes, subscripts,
lambdas, comprehensions or assignments, and the only calls are to ``abs``,
``min``, ``max``, ``lower`` and ``upper``. Names must be known variables, so a
typo is an error at compile time, with its position.

Missing values (``None``: a first event has no mean) make a comparison false and
an arithmetic result ``None``, so a rule over a feature that is not there yet
simply does not fire.

>>> rule = compile_expression('amount > 3 * user_mean_amount and merchant_category in ["jewelry"]',
...                           {"amount", "user_mean_amount", "merchant_category"})
>>> rule({"amount": 400.0, "user_mean_amount": 50.0, "merchant_category": "jewelry"})
True
>>> rule({"amount": 400.0, "user_mean_amount": None, "merchant_category": "jewelry"})
False
>>> try:
...     compile_expression("amount > 3 and amout < 9", {"amount"})
... except ExpressionError as exc:
...     print(exc)
position 16: unknown name 'amout'
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Container, Mapping
from typing import Any

__all__ = ["Compiled", "ExpressionError", "compile_expression", "render_reason"]

Compiled = Callable[[Mapping[str, Any]], Any]
MAX_LENGTH = 2_000
MAX_NODES = 200


class ExpressionError(ValueError):
    """An expression that cannot be compiled, with the 1-based position of the problem."""


_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}
_ARITH: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Mod: operator.mod,
}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": abs,
    "min": min,
    "max": max,
    "lower": lambda s: s.lower() if isinstance(s, str) else None,
    "upper": lambda s: s.upper() if isinstance(s, str) else None,
}


def compile_expression(text: str, variables: Container[str]) -> Compiled:
    """Compile ``text`` over ``variables`` (the names an event provides), or raise
    :class:`ExpressionError` naming the position and the reason."""
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"position {MAX_LENGTH + 1}: longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"position {exc.offset or 1}: {exc.msg}") from None
    nodes = sum(1 for _ in ast.walk(tree))
    if nodes > MAX_NODES:
        raise ExpressionError(f"position 1: {nodes} syntax nodes, at most {MAX_NODES}")
    return _compile(tree.body, variables)


def _fail(node: ast.AST, reason: str) -> ExpressionError:
    return ExpressionError(f"position {getattr(node, 'col_offset', 0) + 1}: {reason}")


def _compile(node: ast.expr, names: Container[str]) -> Compiled:
    if isinstance(node, ast.Constant):
        if not isinstance(node.value, int | float | str | bool | type(None)):
            raise _fail(node, f"constant {node.value!r} is not a number, string, boolean or None")
        value = node.value
        return lambda _: value
    if isinstance(node, ast.Name):
        if node.id in ("true", "True"):
            return lambda _: True
        if node.id in ("false", "False"):
            return lambda _: False
        if node.id not in names:
            raise _fail(node, f"unknown name {node.id!r}")
        key = node.id
        return lambda v: v.get(key)
    if isinstance(node, ast.List | ast.Tuple | ast.Set):
        items = [_compile(e, names) for e in node.elts]
        if isinstance(node, ast.Set):
            return lambda v: frozenset(i(v) for i in items)
        return lambda v: [i(v) for i in items]
    if isinstance(node, ast.BoolOp):
        parts = [_compile(e, names) for e in node.values]
        if isinstance(node.op, ast.And):
            return lambda v: all(bool(p(v)) for p in parts)
        return lambda v: any(bool(p(v)) for p in parts)
    if isinstance(node, ast.UnaryOp):
        inner = _compile(node.operand, names)
        if isinstance(node.op, ast.Not):
            return lambda v: not inner(v)
        if isinstance(node.op, ast.USub):
            return lambda v: None if (x := inner(v)) is None else -x
        raise _fail(node, f"operator {type(node.op).__name__} is not allowed")
    if isinstance(node, ast.BinOp):
        arith = _ARITH.get(type(node.op))
        if arith is None:
            raise _fail(node, f"operator {type(node.op).__name__} is not allowed")
        left, right = _compile(node.left, names), _compile(node.right, names)
        return lambda v: _arith(arith, left(v), right(v))
    if isinstance(node, ast.Compare):
        first = _compile(node.left, names)
        ops = []
        for op_node, right_node in zip(node.ops, node.comparators, strict=True):
            cmp = _COMPARE.get(type(op_node))
            if cmp is None:
                raise _fail(node, f"comparison {type(op_node).__name__} is not allowed")
            ops.append((cmp, _compile(right_node, names)))
        return lambda v: _compare(first(v), ops, v)
    if isinstance(node, ast.IfExp):
        test, yes, no = (_compile(n, names) for n in (node.test, node.body, node.orelse))
        return lambda v: yes(v) if test(v) else no(v)
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS or node.keywords:
            raise _fail(node, f"only calls of {', '.join(_FUNCTIONS)} are allowed")
        fn = _FUNCTIONS[node.func.id]
        args = [_compile(a, names) for a in node.args]
        return lambda v: _call(fn, [a(v) for a in args])
    raise _fail(node, f"{type(node).__name__} is not allowed in a rule")


def _arith(fn: Callable[[Any, Any], Any], a: Any, b: Any) -> Any:
    if a is None or b is None or isinstance(a, str) != isinstance(b, str):
        return None
    try:
        return fn(a, b)
    except (ArithmeticError, TypeError):
        return None


def _compare(
    first: Any, ops: list[tuple[Callable[[Any, Any], bool], Compiled]], v: Mapping[str, Any]
) -> bool:
    left = first
    for cmp, right_fn in ops:
        right = right_fn(v)
        if left is None or right is None:
            return False
        try:
            if not cmp(left, right):
                return False
        except TypeError:
            return False
        left = right
    return True


def _call(fn: Callable[..., Any], args: list[Any]) -> Any:
    if any(a is None for a in args):
        return None
    try:
        return fn(*args)
    except (TypeError, ValueError):
        return None


def render_reason(template: str, variables: Mapping[str, Any]) -> str:
    """``{name}`` replaced by the variable's value (numbers to 2 decimals); nothing else
    is interpreted (no attribute access, no format specs).

    >>> render_reason("{amount} at {category} ({missing})", {"amount": 12.5, "category": "x"})
    '12.50 at x ({missing})'
    """
    out, i = [], 0
    while i < len(template):
        start = template.find("{", i)
        end = template.find("}", start + 1) if start >= 0 else -1
        if start < 0 or end < 0:
            out.append(template[i:])
            break
        name = template[start + 1 : end]
        out.append(template[i:start])
        if name in variables and variables[name] is not None:
            value = variables[name]
            out.append(f"{value:.2f}" if isinstance(value, float) else str(value))
        else:
            out.append(template[start : end + 1])
        i = end + 1
    return "".join(out)
