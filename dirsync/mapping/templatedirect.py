"""Templates and expressions without logic, evaluated without a Jinja render.

Most of a mapping's templates and expressions are made of a few pieces:
names, constants, ``or``/``and``/``not``, an inline ``if``, ``~``, a
comparison, a filter, the source's own methods (``has_class``,
``values``, ``attr``), an item or slice of a list, and ``{% if %}`` or a
``{% for %}`` loop over such a value (generic-ldap: ``{{ 'SMTP:' ~ mail
if mail }}``, ``has_class('groupOfNames') or ...``; csv-gal: ``Type |
lower in ['list', 'dl']``). A sync maps every entry of a large directory,
and a Jinja render costs far more than such a template's own work, so
these are evaluated here: plain Python over the parsed template, doing
what the code Jinja compiles from it does, step by step:

- a name is looked up in the source view as the render's context does;
- output is ``str()`` of each value, a filter is the environment's own
  (limited) filter function, an item goes through the sandbox's
  ``getitem`` and a slice is Python's, an inline ``if`` without ``else``
  gives Jinja's ``Undefined``;
- the budget checks are the render's: ``~`` through the same size check,
  the time checked at each loop item, each method call and each piece of
  output, and the output's size counted piece by piece against the
  entry's characters.

Any other node (a macro, an arithmetic operator, an attribute, a call of
anything but the source's methods, a test, ``loop``, keyword arguments)
leaves the template to Jinja's sandbox, as does a call whose target turns
out not to be a source method when it runs.
"""

from __future__ import annotations

import operator
import types
from collections.abc import Callable, Sequence
from typing import Any

import jinja2.nodes as n
from jinja2.runtime import Undefined

from dirsync.mapping.templatelimits import _concat

#: Evaluates one expression: (view, loop variables, budget) -> value.
Evaluator = Callable[[Any, dict[str, Any], Any], Any]
#: Writes one statement's output: (view, loop variables, budget, parts) -> None.
Writer = Callable[[Any, dict[str, Any], Any, list[str]], None]

_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "eq": operator.eq, "ne": operator.ne, "lt": operator.lt, "gt": operator.gt,
    "lteq": operator.le, "gteq": operator.ge,
    "in": lambda a, b: a in b, "notin": lambda a, b: a not in b,
}
#: The source view's methods a template may call.
_METHODS = frozenset({"attr", "values", "has_class"})
#: Names Jinja gives a meaning of its own in some places (``{{ self }}`` is
#: the template, ``loop`` a loop's state): left to Jinja.
_SPECIAL = frozenset({"loop", "self", "caller", "varargs", "kwargs", "super"})


#: Deepest template evaluated here: each level is a Python call when it runs
#: (Jinja's compiled code nests them in one expression), so a crafted
#: template nested deeper is left to Jinja rather than to the stack's limit.
MAX_DEPTH = 48


class NotDirect(Exception):
    """This evaluation needs Jinja after all (a call of something else)."""


def direct_template(ast: n.Template, env: Any) -> Callable[[Any, Any], str] | None:
    """(view, budget) -> the text ``ast`` renders, or None when it is not
    made of the pieces above. Call before the AST is changed for Jinja."""
    if _too_deep(ast):
        return None
    writers = _statements(ast.body, frozenset(), env)
    if writers is None:
        return None

    def render(view: Any, budget: Any) -> str:
        parts: list[str] = []
        bound: dict[str, Any] = {}
        for write in writers:
            write(view, bound, budget, parts)
        return "".join(parts)
    return render


def direct_expression(ast: n.Template, env: Any) -> Callable[[Any, Any], Any] | None:
    """(view, budget) -> the value of ``{% set result = (expr) %}``, or None."""
    body = ast.body
    if _too_deep(ast):
        return None
    if len(body) != 1 or not isinstance(body[0], n.Assign) \
            or not isinstance(body[0].target, n.Name):
        return None
    evaluate = _expression(body[0].node, frozenset(), env)
    if evaluate is None:
        return None
    empty: dict[str, Any] = {}
    return lambda view, budget: evaluate(view, empty, budget)


def _too_deep(ast: n.Node) -> bool:
    """Is ``ast`` nested more than :data:`MAX_DEPTH` deep? (Level by level,
    not by recursion: the tree may be as deep as Jinja's parser allows.)"""
    level: list[n.Node] = [ast]
    for _ in range(MAX_DEPTH):
        level = [child for node in level for child in node.iter_child_nodes()]
        if not level:
            return False
    return True


# -- statements --------------------------------------------------------------

def _statements(body: Sequence[n.Node], bound: frozenset[str], env: Any) -> list[Writer] | None:
    writers: list[Writer] = []
    for node in body:
        write = _statement(node, bound, env)
        if write is None:
            return None
        writers.append(write)
    return writers


def _statement(node: n.Node, bound: frozenset[str], env: Any) -> Writer | None:
    if isinstance(node, n.Output):
        return _output(node, bound, env)
    if isinstance(node, n.If):
        return _if(node, bound, env)
    if isinstance(node, n.For):
        return _for(node, bound, env)
    return None


def _output(node: n.Output, bound: frozenset[str], env: Any) -> Writer | None:
    pieces: list[str | Evaluator] = []
    for child in node.nodes:
        if isinstance(child, n.TemplateData):
            pieces.append(child.data)
            continue
        evaluate = _expression(child, bound, env)
        if evaluate is None:
            return None
        pieces.append(evaluate)

    def write(view: Any, names: dict[str, Any], budget: Any, parts: list[str]) -> None:
        for piece in pieces:
            text = piece if isinstance(piece, str) else str(piece(view, names, budget))
            # As the render loop does with each chunk.
            budget.tick()
            budget.spend(len(text))
            parts.append(text)
    return write


def _if(node: n.If, bound: frozenset[str], env: Any) -> Writer | None:
    branches: list[tuple[Evaluator, list[Writer]]] = []
    for test_node, body in [(node.test, node.body),
                            *((e.test, e.body) for e in node.elif_)]:
        test = _expression(test_node, bound, env)
        writers = _statements(body, bound, env)
        if test is None or writers is None:
            return None
        branches.append((test, writers))
    otherwise = _statements(node.else_, bound, env)
    if otherwise is None:
        return None

    def write(view: Any, names: dict[str, Any], budget: Any, parts: list[str]) -> None:
        for test, writers in branches:
            if test(view, names, budget):
                break
        else:
            writers = otherwise
        for each in writers:
            each(view, names, budget, parts)
    return write


def _for(node: n.For, bound: frozenset[str], env: Any) -> Writer | None:
    if node.else_ or node.test is not None or node.recursive \
            or not isinstance(node.target, n.Name) or node.target.name in _SPECIAL:
        return None
    target = node.target.name
    items = _expression(node.iter, bound, env)
    writers = _statements(node.body, bound | {target}, env)
    if items is None or writers is None:
        return None

    def write(view: Any, names: dict[str, Any], budget: Any, parts: list[str]) -> None:
        inner = dict(names)
        for item in items(view, names, budget):
            budget.tick()      # as the loop guard does at each item
            inner[target] = item
            for each in writers:
                each(view, inner, budget, parts)
    return write


# -- expressions -------------------------------------------------------------

def _expression(node: n.Node, bound: frozenset[str], env: Any) -> Evaluator | None:
    if isinstance(node, n.Const):
        value = node.value
        if isinstance(value, (list, tuple)) and _literal(value):
            # A literal list Jinja folded into one constant (lists in it too):
            # a new one each time, as the compiled template writes it out.
            return lambda view, names, budget: _fresh(value)
        if not _plain(value):
            return None
        return lambda view, names, budget: value
    if isinstance(node, n.Name):
        return _name(node, bound)
    if isinstance(node, (n.List, n.Tuple)):
        if isinstance(node, n.Tuple) and node.ctx != "load":
            return None
        items = _all(node.items, bound, env)
        if items is None:
            return None
        make = list if isinstance(node, n.List) else tuple
        return lambda view, names, budget: make(i(view, names, budget) for i in items)
    if isinstance(node, n.Not):
        inner = _expression(node.node, bound, env)
        if inner is None:
            return None
        return lambda view, names, budget: not inner(view, names, budget)
    if isinstance(node, (n.And, n.Or)):
        pair = _all([node.left, node.right], bound, env)
        if pair is None:
            return None
        left, right = pair
        if isinstance(node, n.And):
            return lambda view, names, budget: (left(view, names, budget)
                                                and right(view, names, budget))
        return lambda view, names, budget: (left(view, names, budget)
                                            or right(view, names, budget))
    if isinstance(node, n.CondExpr):
        return _condition(node, bound, env)
    if isinstance(node, n.Concat):
        parts = _all(node.nodes, bound, env)
        if parts is None:
            return None
        # What the guarded template calls for ``~``: the same size checks.
        return lambda view, names, budget: _concat(*(p(view, names, budget) for p in parts))
    if isinstance(node, n.Compare):
        return _compare(node, bound, env)
    if isinstance(node, n.Filter):
        return _filter(node, bound, env)
    if isinstance(node, n.Call):
        return _call(node, bound, env)
    if isinstance(node, n.Getitem):
        return _getitem(node, bound, env)
    return None


def _plain(value: Any) -> bool:
    return value is None or type(value) in (str, int, float, bool)


def _literal(value: Any, depth: int = 0) -> bool:
    """Plain values, or lists and tuples of them (nested a few levels at most)."""
    if isinstance(value, (list, tuple)):
        return depth < 8 and all(_literal(v, depth + 1) for v in value)
    return _plain(value)


def _fresh(value: Any) -> Any:
    """``value`` with new lists (a template may not change a constant for the next entry)."""
    if isinstance(value, list):
        return [_fresh(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_fresh(v) for v in value)
    return value


def _all(nodes: Sequence[n.Node], bound: frozenset[str], env: Any) -> list[Evaluator] | None:
    found = []
    for node in nodes:
        evaluate = _expression(node, bound, env)
        if evaluate is None:
            return None
        found.append(evaluate)
    return found


def _name(node: n.Name, bound: frozenset[str]) -> Evaluator | None:
    name = node.name
    if node.ctx != "load" or name in _SPECIAL:
        return None
    if name in bound:
        return lambda view, names, budget: names[name]
    # The render's context has nothing of its own: the view answers every name.
    return lambda view, names, budget: view[name]


def _condition(node: n.CondExpr, bound: frozenset[str], env: Any) -> Evaluator | None:
    test = _expression(node.test, bound, env)
    then = _expression(node.expr1, bound, env)
    otherwise = _expression(node.expr2, bound, env) if node.expr2 is not None else None
    if test is None or then is None or (node.expr2 is not None and otherwise is None):
        return None
    if otherwise is None:
        # Jinja's ``cond_expr_undefined``: the plain Undefined (empty as text),
        # with the same hint should anything use it further.
        hint = (f"the inline if-expression on line {node.lineno} evaluated to false and "
                "no else section was defined.")
        return lambda view, names, budget: (then(view, names, budget)
                                            if test(view, names, budget)
                                            else Undefined(hint=hint))
    other = otherwise
    return lambda view, names, budget: (then(view, names, budget)
                                        if test(view, names, budget)
                                        else other(view, names, budget))


def _compare(node: n.Compare, bound: frozenset[str], env: Any) -> Evaluator | None:
    if len(node.ops) != 1 or node.ops[0].op not in _COMPARE:
        return None
    compare = _COMPARE[node.ops[0].op]
    pair = _all([node.expr, node.ops[0].expr], bound, env)
    if pair is None:
        return None
    left, right = pair
    return lambda view, names, budget: compare(left(view, names, budget),
                                               right(view, names, budget))


def _filter(node: n.Filter, bound: frozenset[str], env: Any) -> Evaluator | None:
    func = env.filters.get(node.name)
    if func is None or node.node is None or node.kwargs or node.dyn_args \
            or node.dyn_kwargs or hasattr(func, "jinja_pass_arg"):
        return None
    args = _all([node.node, *node.args], bound, env)
    if args is None:
        return None
    if len(args) == 1:
        value = args[0]
        return lambda view, names, budget: func(value(view, names, budget))
    return lambda view, names, budget: func(*(a(view, names, budget) for a in args))


def _call(node: n.Call, bound: frozenset[str], env: Any) -> Evaluator | None:
    if not isinstance(node.node, n.Name) or node.node.name not in _METHODS \
            or node.node.name in bound or node.kwargs or node.dyn_args or node.dyn_kwargs:
        return None
    name = node.node.name
    args = _all(node.args, bound, env)
    if args is None:
        return None

    def call(view: Any, names: dict[str, Any], budget: Any) -> Any:
        method = view[name]
        if type(method) is not types.MethodType \
                or not getattr(method.__self__, "dirsync_source", False):
            raise NotDirect(name)
        # What the sandbox's call hook does with the source's own methods.
        budget.tick()
        return method(*(a(view, names, budget) for a in args))
    return call


def _getitem(node: n.Getitem, bound: frozenset[str], env: Any) -> Evaluator | None:
    if node.ctx != "load":
        return None
    value = _expression(node.node, bound, env)
    if value is None:
        return None
    argument = node.arg
    if isinstance(argument, n.Slice):
        ends = [_expression(end, bound, env) if end is not None else None
                for end in (argument.start, argument.stop, argument.step)]
        if any(end is None and part is not None for end, part in
               zip(ends, (argument.start, argument.stop, argument.step))):
            return None
        start, stop, step = ends

        def sliced(view: Any, names: dict[str, Any], budget: Any) -> Any:
            # A slice is taken as Python takes it (Jinja writes ``value[a:b]``).
            found = value(view, names, budget)
            return found[slice(*(e(view, names, budget) if e is not None else None
                                 for e in (start, stop, step)))]
        return sliced
    key = _expression(argument, bound, env)
    if key is None:
        return None
    return lambda view, names, budget: env.getitem(value(view, names, budget),
                                                   key(view, names, budget))
