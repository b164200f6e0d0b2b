"""Mapping templates and expressions, compiled once and run sandboxed.

Templates are Jinja2 (``{{ givenName }} {{ sn }}``) in a
:class:`jinja2.sandbox.SandboxedEnvironment`: no file access, no imports,
no private attributes, never ``eval``. Each one is compiled when the
mapping is loaded. What a template sees of a source entry is a
:class:`SourceView`: every attribute by name (case-insensitive, its first
value, ``""`` when the entry lacks it), ``attr('Display Name')`` for names
that are not identifiers, ``values(name)`` for all values, ``dn``,
``anchor``, ``has_class(name)`` and the mapping's variables.

A template's output is split into lines: each non-empty line is one value,
so a template that yields nothing leaves the attribute out, and one that
yields several lines gives a multi-valued attribute.

The most common templates, a plain ``{{ name }}`` or a chain such as
``{{ entryUUID or dn }}``, skip Jinja altogether: they are looked up
directly, with the same result, because a sync maps every entry of a
large directory. Others without logic (a condition, ``~``, a filter, a
loop over a source's values) are evaluated by
:mod:`dirsync.mapping.templatedirect`, with the render's budget checks.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import jinja2
import jinja2.meta
import jinja2.nodes

from dirsync.entry import Entry
from dirsync.mapping.templatebudget import LimitExceeded, LoneRender, active
from dirsync.mapping.templatedirect import NotDirect, direct_expression, direct_template
from dirsync.mapping.templatelimits import LimitedEnvironment, guard_ast, sized_lines

#: Names a template sees that are not source attributes.
RESERVED = frozenset({"dn", "anchor", "attr", "values", "has_class", "kind"})
_VALUE_FUNCTIONS = ("attr", "values")

_NAME = r"[A-Za-z_][A-Za-z0-9_-]*"
_TERM = rf"(?:{_NAME}|attr\(\s*'[^'\\]*'\s*\)|attr\(\s*\"[^\"\\]*\"\s*\))"
_FAST = re.compile(rf"^([^{{}}]*)\{{\{{\s*({_TERM}(?:\s+or\s+{_TERM})*)\s*\}}\}}([^{{}}]*)$")
_JINJA_MARKS = ("{{", "{%", "{#")


class TemplateError(Exception):
    """A template failed on one entry; names the mapping key (and line)."""

    def __init__(self, key: str, line: int | None, message: str) -> None:
        self.key = key
        self.line = line
        self.message = message
        where = f"line {line}: " if line else ""
        super().__init__(f"{where}{key}: {message}")


def _split(value: Any, sep: str = ";") -> list[str]:
    """Filter ``split``: a string or a list of strings cut at ``sep``, trimmed."""
    items = value if isinstance(value, (list, tuple)) else [value]
    parts: list[str] = []
    for item in items:
        if item is None:
            continue
        parts.extend(p.strip() for p in str(item).split(sep))
    return [p for p in parts if p]


def _environment() -> LimitedEnvironment:
    env = LimitedEnvironment(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=False,
        # Values are plain text: no HTML escaping, no line statements.
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["split"] = _split
    # Foreign address formats: ascii, x400, mailboxes (dirsync.mapping.textfilters).
    from dirsync.mapping.textfilters import FILTERS

    env.filters.update(FILTERS)
    env.limit_filters()
    return env


ENV = _environment()


class SourceView(Mapping[str, Any]):
    """A source entry as templates see it (read-only, case-insensitive)."""

    __slots__ = ("_first", "entry", "extra", "variables")
    #: Its values are the source's: the template limits do not cut them.
    dirsync_source = True

    def __init__(self, entry: Entry, variables: Mapping[str, str] | None = None,
                 **extra: Any) -> None:
        self.entry = entry
        self.variables = variables or {}
        self.extra: dict[str, Any] = {"dn": entry.dn, **extra}
        self._first: dict[str, str] = {}

    def first(self, name: str) -> str:
        """The first value of attribute ``name`` as text, ``""`` if none."""
        cached = self._first.get(name)
        if cached is not None:
            return cached
        values = self.entry.get(name)
        text = values[0].decode("utf-8", "replace") if values else ""
        self._first[name] = text
        return text

    def all(self, name: str) -> list[str]:
        return [v.decode("utf-8", "replace") for v in self.entry.get(name)]

    def has_class(self, name: str) -> bool:
        wanted = name.lower()
        return any(v.decode("utf-8", "replace").lower() == wanted
                   for v in self.entry.get("objectClass"))

    def lookup(self, name: str) -> str:
        """What a bare name means: an extra, a variable, else an attribute."""
        if name in self.extra:
            return str(self.extra[name])
        if name in self.variables:
            return self.variables[name]
        return self.first(name)

    # Mapping protocol, as Jinja resolves names through it.
    def __getitem__(self, name: str) -> Any:
        if name in self.extra:
            return self.extra[name]
        if name == "attr":
            return self.first
        if name == "values":
            return self.all
        if name == "has_class":
            return self.has_class
        if name in self.variables:
            return self.variables[name]
        if name in ENV.globals:
            return ENV.globals[name]
        return self.first(name)

    def __contains__(self, name: object) -> bool:
        # Every name resolves: a source attribute the entry lacks is "".
        return isinstance(name, str)

    def __iter__(self) -> Iterator[str]:
        yield from self.extra
        yield from ("attr", "values", "has_class")
        yield from self.variables
        yield from self.entry.names()

    def __len__(self) -> int:
        return len(self.extra) + 3 + len(self.variables) + len(self.entry.names())


def _fast_terms(text: str) -> tuple[str, list[tuple[str, str]], str] | None:
    """``SMTP:{{ a or attr('B c') }}`` as ("SMTP:", [("name", "a"), ("attr", "B c")], ""),
    else None: text around one expression that is a chain of names."""
    match = _FAST.match(text)
    if not match:
        return None
    terms: list[tuple[str, str]] = []
    for raw in re.split(r"\s+or\s+", match.group(2)):
        raw = raw.strip()
        if raw.startswith("attr("):
            terms.append(("attr", raw[raw.index("(") + 1: raw.rindex(")")].strip()[1:-1]))
        elif raw in ("attr", "values", "has_class"):
            return None
        else:
            terms.append(("name", raw))
    return match.group(1), terms, match.group(3)


def referenced_names(ast: jinja2.nodes.Template) -> tuple[set[str], set[str]]:
    """(bare names, literal arguments of attr()/values()/has_class()) a template reads."""
    names = set(jinja2.meta.find_undeclared_variables(ast))
    # A macro that calls itself names itself before it is declared.
    names -= {macro.name for macro in ast.find_all(jinja2.nodes.Macro)}
    literal: set[str] = set()
    for call in ast.find_all(jinja2.nodes.Call):
        if isinstance(call.node, jinja2.nodes.Name) and call.node.name in _VALUE_FUNCTIONS \
                and call.args and isinstance(call.args[0], jinja2.nodes.Const) \
                and isinstance(call.args[0].value, str):
            literal.add(call.args[0].value)
    return names, literal


@dataclass
class Compiled:
    """What every template and expression shares: where it came from."""

    key: str
    source: str
    line: int | None = None
    #: Source attribute names it reads (bare names and attr('...') literals);
    #: the names of variables and reserved names are not in it.
    attributes: set[str] = field(default_factory=set)

    def error(self, message: str) -> TemplateError:
        return TemplateError(self.key, self.line, message)

    def failed(self, exc: BaseException) -> TemplateError:
        """The per-entry error for what a render raised."""
        if isinstance(exc, jinja2.TemplateError):
            return self.error(_explain(exc))
        if isinstance(exc, LimitExceeded):
            return self.error(f"over a limit: {exc}")
        if isinstance(exc, RecursionError):
            return self.error("calls nested too deep (RecursionError)")
        if isinstance(exc, MemoryError):
            return self.error("out of memory (MemoryError)")
        return self.error(f"{type(exc).__name__}: {exc}")


class Template(Compiled):
    """A value template: rendered, split into lines, empty lines dropped."""

    def __init__(self, key: str, source: str, line: int | None = None,
                 variables: Mapping[str, str] | None = None) -> None:
        super().__init__(key, source, line)
        self._constant: list[str] | None = None
        self._terms: tuple[str, list[tuple[str, str]], str] | None = None
        self._jinja: jinja2.Template | None = None
        self._direct: Any = None
        if not any(mark in source for mark in _JINJA_MARKS):
            self._constant = _lines(source)
            return
        try:
            ast = ENV.parse(source)
            # Compiles the template: an unknown filter or test fails here.
            names, literal = referenced_names(ast)
        except jinja2.TemplateSyntaxError as exc:
            raise self._syntax(exc) from None
        except _FAILURES as exc:
            # A constant part Jinja works out while it compiles ('' | first).
            raise TemplateError(key, line, f"cannot be compiled: {exc}") from None
        self.attributes = {n for n in names | literal
                           if n not in RESERVED and n not in (variables or {})
                           and n not in ENV.globals}
        self._terms = _fast_terms(source)
        if self._terms is None:
            # Before guard_ast changes the tree for Jinja.
            self._direct = direct_template(ast, ENV)
            self._jinja = compiled(ast, key, line)

    def _syntax(self, exc: jinja2.TemplateSyntaxError) -> TemplateError:
        line = (self.line or 1) + (exc.lineno or 1) - 1 if self.line else None
        return TemplateError(self.key, line, f"template syntax error: {exc.message}")

    def values(self, view: SourceView) -> list[str]:
        if self._constant is not None:
            return list(self._constant)
        if self._terms is not None:
            # What Jinja would render: the text around, and the first value that
            # is not empty (``or``), or nothing.
            before, terms, after = self._terms
            found = ""
            for kind, name in terms:
                found = view.first(name) if kind == "attr" else view.lookup(name)
                if found:
                    break
            # A source value copied as it is: no template work to bound.
            return _lines(f"{before}{found}{after}" if before or after else found)
        assert self._jinja is not None
        try:
            if self._direct is not None:
                try:
                    return sized_lines(_lines(_evaluate(self._direct, view)))
                except NotDirect:
                    pass
            return sized_lines(_lines(_render(self._jinja, view)[0]))
        except _FAILURES as exc:
            raise self.failed(exc) from None

    def first(self, view: SourceView) -> str:
        found = self.values(view)
        return found[0] if found else ""


class Expression(Compiled):
    """An expression (``Type == 'list'``) evaluated to a Python value."""

    def __init__(self, key: str, source: str, line: int | None = None,
                 variables: Mapping[str, str] | None = None) -> None:
        super().__init__(key, source, line)
        try:
            ast = ENV.parse(f"{{% set result = ({source}) %}}")
            names, literal = referenced_names(ast)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(key, line, f"expression syntax error: {exc.message}") from None
        except _FAILURES as exc:
            raise TemplateError(key, line, f"cannot be compiled: {exc}") from None
        self.attributes = {n for n in names | literal
                           if n not in RESERVED and n not in (variables or {})
                           and n not in ENV.globals}
        self._name = _plain_name(ast)
        # Before guard_ast changes the tree for Jinja.
        self._direct = direct_expression(ast, ENV) if self._name is None else None
        self._jinja = compiled(ast, key, line)

    def value(self, view: SourceView) -> Any:
        if self._name is not None:
            # ``name`` or ``not name``: the value Jinja would look up (the
            # view resolves every name), with no template work to bound.
            negated, name = self._name
            found = view[name]
            return not found if negated else found
        try:
            if self._direct is not None:
                try:
                    return _evaluate(self._direct, view)
                except NotDirect:
                    pass
            # What get_exported() would give, without its dict of every export.
            return _render(self._jinja, view)[1].vars["result"]
        except _FAILURES as exc:
            raise self.failed(exc) from None

    def truth(self, view: SourceView) -> bool:
        return bool(self.value(view))

    def strings(self, view: SourceView) -> list[str]:
        """The value as a list of non-empty strings (a string is one item)."""
        found = self.value(view)
        if found is None or found == "":
            return []
        if isinstance(found, (str, bytes)):
            items = [found]
        else:
            try:
                items = list(found)
            except TypeError:
                items = [found]
        out = []
        for item in items:
            text = item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)
            if text.strip():
                out.append(text.strip())
        return out


def _plain_name(ast: jinja2.nodes.Template) -> tuple[bool, str] | None:
    """(negated, name) of an expression that is ``name`` or ``not name``
    (``skip = "not Email"``), else None."""
    body = ast.body
    if len(body) != 1 or not isinstance(body[0], jinja2.nodes.Assign):
        return None
    node = body[0].node
    negated = isinstance(node, jinja2.nodes.Not)
    inner = node.node if isinstance(node, jinja2.nodes.Not) else node
    if isinstance(inner, jinja2.nodes.Name) and inner.ctx == "load":
        return negated, inner.name
    return None


#: What a render may raise for one entry, besides Jinja's own errors: each
#: becomes a per-entry error, never a traceback.
def compiled(ast: Any, key: str, line: int | None) -> jinja2.Template:
    """Jinja's template of a parsed tree. Jinja works out constant parts while
    it compiles: one that fails (``'' | first``) is the mapping's error."""
    try:
        return ENV.from_string(guard_ast(ast))  # type: ignore[arg-type]
    except _FAILURES as exc:
        raise TemplateError(key, line, f"cannot be compiled: {exc}") from None


_FAILURES = (jinja2.TemplateError, LimitExceeded, TypeError, ValueError, AttributeError,
             KeyError, IndexError, ZeroDivisionError, OverflowError, RecursionError,
             MemoryError)


def _render(template: jinja2.Template, view: SourceView) -> tuple[str, Any]:
    """(text, context) of one render, within the budget of the entry.

    The output is taken chunk by chunk (instead of Jinja's ``make_module``,
    which lists it whole) so that its time and size are checked as it grows.
    """
    budget = active()
    if budget is None:
        with LoneRender() as budget:
            return _chunks(template, view, budget)
    return _chunks(template, view, budget)


def _evaluate(direct: Any, view: SourceView) -> Any:
    """A template or expression of :mod:`dirsync.mapping.templatedirect`, within
    the budget of the entry (as :func:`_render`). When it needs Jinja after
    all, the characters it counted are given back: the render counts them."""
    budget = active()
    if budget is None:
        with LoneRender() as budget:
            return direct(view, budget)
    left = budget.chars_left
    try:
        return direct(view, budget)
    except NotDirect:
        budget.chars_left = left
        raise


def _chunks(template: jinja2.Template, view: SourceView, budget: Any) -> tuple[str, Any]:
    context = template.new_context(view, shared=True)  # type: ignore[arg-type]
    parts: list[str] = []
    tick = budget.tick
    spend = budget.spend
    for chunk in template.root_render_func(context):
        tick()
        spend(len(chunk))
        parts.append(chunk)
    return "".join(parts), context


def _lines(text: str) -> list[str]:
    if "\n" not in text and "\r" not in text:
        stripped = text.strip()
        return [stripped] if stripped else []
    return [line.strip() for line in text.splitlines() if line.strip()]


def _explain(exc: jinja2.TemplateError) -> str:
    if isinstance(exc, jinja2.UndefinedError):
        return f"undefined: {exc.message}"
    if isinstance(exc, jinja2.exceptions.SecurityError):
        return f"not allowed in a mapping: {exc}"
    return str(exc)
