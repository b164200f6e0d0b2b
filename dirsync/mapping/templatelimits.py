"""The checks that keep mapping templates within their budgets.

Jinja's sandbox keeps a template away from files and private attributes,
but not from the machine's time and memory: nested loops that never end,
``'x' * 3000000000``, a macro that calls itself. A mapping may come from
someone else, so every template runs inside a budget:

- a time budget per entry (all of its templates together) and per run;
- a size budget: each value a template makes (strings, lists), each line
  it renders, and all the text rendered for one entry;
- a call depth (macros calling macros, recursive loops);
- ranges of at most so many items.

Going past one raises :class:`dirsync.mapping.templatebudget.LimitExceeded`
(the budgets themselves live there), which the template layer turns into
a per-entry error. The checks sit where a template's work
passes through Jinja's hooks: the sandbox's ``call`` and intercepted
operators, every ``{% for %}`` (its iterable is wrapped when the template
is compiled), the string concatenation ``~``, the filters, and the render
loop itself. Nothing runs in another thread: a template that is stopped
is stopped for good.
"""

from __future__ import annotations

import re
import types
from collections.abc import Callable, Iterable, Iterator
from functools import update_wrapper
from typing import Any

import jinja2.nodes
from jinja2.runtime import LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedFormatter

from dirsync.mapping.templatebudget import MIN_SIZE, LimitExceeded, scope, tick

#: Largest integer a template may make by ``*`` or ``**``, in bits.
INT_BITS = 4096

#: A printf conversion's width and precision (``%-08.3f``, ``%*d``).
_PRINTF = re.compile(r"%[#0 +-]*(\*|\d*)(?:\.(\*|\d*))?")


# -- checks ------------------------------------------------------------------

_SIZED = (str, bytes, list, tuple, dict, set, frozenset)


def _volume(value: Any) -> int:
    """About how much text a value holds: a string's length, a list's items and
    the length of its strings."""
    if isinstance(value, (str, bytes)):
        return len(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        return len(value) + sum(len(v) for v in value if isinstance(v, (str, bytes)))
    return len(value) if isinstance(value, dict) else 0


def check_size(value: Any, inputs: tuple[Any, ...] = ()) -> Any:
    """``value`` if it is within the size of one value, else LimitExceeded.

    Strings are held to ``value_chars``, lists and the like to
    ``list_items``; a value that is no larger than the largest of its
    ``inputs`` passes (a filter may keep a large source value as it is,
    not make it larger).
    """
    if not isinstance(value, _SIZED) or len(value) <= MIN_SIZE:
        return value
    if isinstance(value, (str, bytes)):
        limit, key = scope().limits.value_chars, "value_chars"
    elif isinstance(value, _SIZED):
        limit, key = scope().limits.list_items, "list_items"
    else:
        return value
    if len(value) > limit and len(value) > max((_volume(i) for i in inputs), default=0):
        raise LimitExceeded(f"makes a value of {len(value)} items or characters (at most "
                            f"{limit}: template_limits.{key})")
    return value


def _check_number(value: Any, what: str) -> None:
    if isinstance(value, int) and not isinstance(value, bool):
        limit = scope().limits.value_chars
        if abs(value) > limit:
            raise LimitExceeded(f"{what} {value} is larger than {limit} "
                                "(template_limits.value_chars)")


def _check_printf(text: str, args: Any) -> None:
    """Before ``text % args``: the widths and precisions of all its conversions,
    written or taken from ``args``, may not add up past the value size."""
    total = 0
    for width, precision in _PRINTF.findall(text):
        for part in (width, precision):
            if part.isdigit():
                if len(part) > 9:
                    raise LimitExceeded("a format width too large")
                total += int(part)
    for item in args if isinstance(args, tuple) else (args,):
        if isinstance(item, int) and not isinstance(item, bool):
            total += abs(item) if "*" in text else 0
    check_size_count(total)


class _Formatter(SandboxedFormatter):
    """``str.format`` for templates: the fields it makes, all together, within
    the value size (a width may come from an argument: ``'{:{}}'``)."""

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        self.made = 0

    def format_field(self, value: Any, format_spec: str) -> Any:
        for width, precision in _SPEC.findall(format_spec):
            for part in (width, precision):
                if len(part) > 9:
                    raise LimitExceeded("a format width too large")
                if part:
                    check_size_count(self.made + int(part))
        found = super().format_field(value, format_spec)
        self.made += len(found)
        check_size_count(self.made)
        return found


#: A format spec's width and precision (``>10``, ``08.3f``).
_SPEC = re.compile(r"(\d+)?(?:[,_])?(?:\.(\d+))?[a-zA-Z%]?$")


def _check_repeat(seq: Any, times: Any) -> None:
    if isinstance(times, int) and isinstance(seq, (str, bytes, list, tuple)):
        limits = scope().limits
        strings = isinstance(seq, (str, bytes))
        limit = limits.value_chars if strings else limits.list_items
        if len(seq) * max(times, 0) > limit:
            raise LimitExceeded(f"makes a value of {len(seq) * times} items or characters "
                                f"(at most {limit}: template_limits."
                                f"{'value_chars' if strings else 'list_items'})")


def _check_bits(bits: int) -> None:
    if bits > INT_BITS:
        raise LimitExceeded(f"makes a number of more than {INT_BITS} bits")


def _check_replace(text: Any, old: Any, new: Any) -> None:
    if isinstance(text, str) and isinstance(old, str) and isinstance(new, str):
        grows = text.count(old) * (len(new) - len(old))
        if grows > 0:
            check_size_count(len(text) + grows)


def check_size_count(count: int, items: bool = False) -> None:
    """A string of ``count`` characters (a list of ``count`` items) may be made."""
    limits = scope().limits
    limit, key = (limits.list_items, "list_items") if items else \
        (limits.value_chars, "value_chars")
    if count > limit:
        raise LimitExceeded(f"makes a value of {count} items or characters (at most {limit}: "
                            f"template_limits.{key})")


def _check_join(sep: Any, items: Any) -> None:
    """Before ``sep.join(items)``: separators may not make it grow past the limit
    (a large list of a source joined by one character is fine)."""
    if isinstance(sep, str) and isinstance(items, (list, tuple)):
        volume = _volume(items)
        size = volume - len(items) + len(sep) * max(len(items) - 1, 0)
        if size > volume:
            check_size_count(size)


def binop(operator: str, left: Any, right: Any) -> None:
    """Before ``left <operator> right`` runs."""
    if operator == "*":
        _check_repeat(left, right)
        _check_repeat(right, left)
        if isinstance(left, int) and isinstance(right, int):
            _check_bits(left.bit_length() + right.bit_length())
    elif operator == "**":
        if isinstance(left, int) and isinstance(right, int) and right > 0:
            _check_bits(max(left.bit_length(), 1) * right)
    elif operator == "%" and isinstance(left, str):
        _check_printf(left, right)


def bounded_range(*args: Any) -> range:
    """``range`` for templates: whole numbers, at most ``range_items`` items."""
    for arg in args:
        if isinstance(arg, bool) or not isinstance(arg, int):
            raise LimitExceeded(f"range() takes whole numbers, not {arg!r}")
    found = range(*args)
    limit = scope().limits.range_items
    try:
        size = len(found)
    except OverflowError:
        size = limit + 1
    if size > limit:
        raise LimitExceeded(f"range() of more than {limit} items "
                            "(template_limits.range_items)")
    return found


def guarded(iterable: Any) -> Iterator[Any]:
    """A ``{% for %}`` loop's items, with the time budget checked at each one."""
    current = scope()
    for item in iterable:
        current.tick()
        yield item


#: What a filter may be passed before its value.
_PASSED = (jinja2.runtime.Context, jinja2.Environment, jinja2.nodes.EvalContext)

# Filters whose arguments after the value are widths or counts.
_SIZED_FILTERS = {"center", "indent", "wordwrap", "truncate", "batch", "slice", "format"}
#: Filters whose arguments are looked at before they run.
_CHECKED_FILTERS = _SIZED_FILTERS | {"replace", "join", "sum"}


def _filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    def limited(*args: Any, **kwargs: Any) -> Any:
        tick()
        # Context and environment filters get those first; the value follows.
        rest = [a for a in args if not isinstance(a, _PASSED)]
        value, extra = (rest[0], rest[1:]) if rest else (None, [])
        if name in _SIZED_FILTERS:
            for item in [*extra, *kwargs.values()]:
                _check_number(item, f"{name}() argument")
            if name == "format" and isinstance(value, str):
                _check_printf(value, tuple(extra))
            if name == "wordwrap" and isinstance(value, str):
                wrap = extra[2] if len(extra) > 2 else kwargs.get("wrapstring") or "\n"
                width = extra[0] if extra else kwargs.get("width", 79)
                if isinstance(wrap, str) and isinstance(width, int):
                    check_size_count(len(value) + len(wrap) * (len(value) // max(width, 1) + 1))
            if name == "indent" and isinstance(value, str):
                width = extra[0] if extra else kwargs.get("width", 4)
                per_line = width if isinstance(width, int) else len(str(width))
                check_size_count(len(value) + per_line * (value.count("\n") + 1))
        elif name == "replace" and len(extra) >= 2:
            _check_replace(value, extra[0], extra[1])
        elif name == "sum" and isinstance(value, (list, tuple)):
            # Lists summed are concatenated: as large as all of them.
            total = 0
            for item in value:
                if isinstance(item, (list, tuple)):
                    total += len(item)
                    check_size_count(total, items=True)
        elif name == "join" and rest:
            sep = extra[0] if extra else kwargs.get("d", "")
            if not isinstance(value, (list, tuple, str)):
                # A generator (``map``, ``select``): counted before it is joined.
                items = list(guarded(value))
                args = tuple(items if a is value else a for a in args)
                value = items
            if isinstance(value, (list, tuple)):
                _check_join(sep, value)
        return check_size(func(*args, **kwargs), (*rest, *kwargs.values()))

    def plain(*args: Any, **kwargs: Any) -> Any:
        tick()
        found = func(*args, **kwargs)
        if isinstance(found, _SIZED) and len(found) > MIN_SIZE:
            return check_size(found, (*args, *kwargs.values()))
        return found

    wrapper = limited if name in _CHECKED_FILTERS else plain
    if hasattr(func, "jinja_pass_arg"):
        wrapper.jinja_pass_arg = func.jinja_pass_arg  # type: ignore[attr-defined]
    wrapper.__name__ = getattr(func, "__name__", name)
    return wrapper


class LimitedEnvironment(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox with budgets on time, size and depth."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.globals["range"] = bounded_range
        # What a compiled template calls (see guard_ast).
        self.dirsync_loop = guarded  # type: ignore[attr-defined]
        self.dirsync_concat = _concat  # type: ignore[attr-defined]

    def limit_filters(self) -> None:
        """Wrap every filter (call once the filters are all registered)."""
        self.filters = {name: _filter(name, func) for name, func in self.filters.items()}

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """``str.format`` through :class:`_Formatter` (Jinja's own, with the
        size of what it makes checked field by field)."""
        if not isinstance(value, (types.MethodType, types.BuiltinMethodType)) \
                or value.__name__ not in ("format", "format_map") \
                or type(value.__self__) is not str:
            return super().wrap_str_format(value)
        text: str = value.__self__
        by_map = value.__name__ == "format_map"
        env = self

        def wrapper(*args: Any, **kwargs: Any) -> str:
            if not by_map:
                return _Formatter(env).vformat(text, args, kwargs)
            if kwargs or len(args) != 1:
                raise TypeError("format_map() takes exactly one argument")
            return _Formatter(env).vformat(text, (), args[0])

        return update_wrapper(wrapper, value)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        scope().tick()
        binop(operator, left, right)
        return check_size(super().call_binop(context, operator, left, right))

    def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        current = scope()
        current.tick()
        if type(obj) is types.MethodType and getattr(obj.__self__, "dirsync_source", False):
            # The source entry's own methods (has_class, values, attr): they
            # read what the entry holds and call nothing back, so only the
            # time check applies. Most calls of a mapping are these, so they
            # are called as they are: Jinja's own checks (a format method, a
            # callable marked unsafe, a context passed) have nothing to find
            # on them. Inside a loop Jinja passes the loop's variables along,
            # for functions that take the context; Jinja's own call drops them.
            if kwargs:
                kwargs.pop("_loop_vars", None)
                kwargs.pop("_block_vars", None)
            return obj(*args, **kwargs)
        target = getattr(obj, "__wrapped__", obj)
        owner = getattr(target, "__self__", None)
        if getattr(owner, "dirsync_source", False):
            return super().call(context, obj, *args, **kwargs)
        if isinstance(obj, LoopContext) and args:
            # A recursive loop's ``loop(children)``: its items are counted too.
            args = (guarded(args[0]), *args[1:])
        if isinstance(owner, str):
            name = getattr(target, "__name__", "")
            for item in [*args, *kwargs.values()]:
                _check_number(item, f"{name}() argument")
            if name == "replace" and len(args) >= 2:
                _check_replace(owner, args[0], args[1])
            elif name == "expandtabs":
                size = args[0] if args else kwargs.get("tabsize", 8)
                if isinstance(size, int):
                    check_size_count(len(owner) + owner.count("\t") * max(size, 0))
            elif name == "translate" and args and isinstance(args[0], dict):
                longest = max((len(v) for v in args[0].values() if isinstance(v, str)),
                              default=1)
                check_size_count(len(owner) * max(longest, 1))
            elif name == "join" and args:
                _check_join(owner, args[0])
        elif getattr(obj, "__name__", "") == "generate_lorem_ipsum":
            for item in [*args, *kwargs.values()]:
                _check_number(item, "lipsum() argument")
        current.depth += 1
        if current.depth > current.limits.depth:
            current.depth -= 1
            raise LimitExceeded(f"calls nested more than {current.limits.depth} deep "
                                "(template_limits.depth)")
        try:
            found = super().call(context, obj, *args, **kwargs)
            return check_size(found, (owner, *args, *kwargs.values()))
        finally:
            current.depth -= 1


def _concat(*parts: Any) -> str:
    """``a ~ b``: what Jinja's own concatenation gives, within the value size."""
    scope().tick()
    check_size_count(sum(len(p) if isinstance(p, str) else 0 for p in parts))
    return check_size("".join(str(p) for p in parts))


def guard_ast(ast: jinja2.nodes.Template) -> jinja2.nodes.Template:
    """Route every loop's iterable and every ``~`` through the budget checks.

    The calls go to attributes of the environment, which a template cannot
    name or shadow.
    """
    for loop in ast.find_all(jinja2.nodes.For):
        loop.iter = _env_call("dirsync_loop", [loop.iter], loop.lineno)  # type: ignore[list-item]
    for concat in list(ast.find_all(jinja2.nodes.Concat)):
        call = _env_call("dirsync_concat", list(concat.nodes), concat.lineno)
        _replace(ast, concat, call)
    return ast


def _env_call(name: str, args: list[jinja2.nodes.Expr], lineno: int) -> jinja2.nodes.Call:
    return jinja2.nodes.Call(jinja2.nodes.EnvironmentAttribute(name, lineno=lineno), args,
                             [], None, None, lineno=lineno)


def _replace(root: jinja2.nodes.Node, old: jinja2.nodes.Node, new: jinja2.nodes.Expr) -> None:
    """Put ``new`` where ``old`` is among the fields of its parent."""
    for node in [root, *root.find_all(jinja2.nodes.Node)]:
        for name in node.fields:
            value = getattr(node, name, None)
            if value is old:
                setattr(node, name, new)
                return
            if isinstance(value, list):
                for i, item in enumerate(value):
                    if item is old:
                        value[i] = new
                        return


def sized_lines(lines: Iterable[str]) -> list[str]:
    """The values of a render, each checked against the value size."""
    out = list(lines)
    limit = scope().limits.value_chars
    for line in out:
        if len(line) > limit:
            raise LimitExceeded(f"renders a value of {len(line)} characters (at most {limit}: "
                                "template_limits.value_chars)")
    return out
