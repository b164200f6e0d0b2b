"""Attribute mappings: how a foreign entry becomes a hub entry.

A mapping is a TOML file (``mappings/*.toml``, docs/mapping.md) of
templates and expressions over the source entry's attributes. It is loaded
and compiled once: every template is parsed, every key checked, and every
problem reported together with the mapping file, the line and the key.
:meth:`Mapping.select` picks the parts for one connection's recipient type
and list mode; :meth:`Selected.map` then turns a source entry into a
:class:`Mapped` entry, a pure function with no I/O.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Iterable
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dirsync.entry import Entry
from dirsync.errors import ConfigError
from dirsync.mapping.exportmap import ExportMapping, load_export
from dirsync.mapping.loader import Loader
from dirsync.mapping.templates import Expression, SourceView, Template
from dirsync.schema import ATTR_NAME

KIND_PERSON = "person"
KIND_LIST = "list"

#: Attributes the engine writes on every entry it owns.
ANCHOR_ATTR = "dirsyncAnchor"
SOURCE_ATTR = "dirsyncSource"
MARKER_CLASS = "dirsyncObject"

_PART_KEYS = {"object_classes", "attributes", "target_address", "proxy_addresses", "remove"}
_LIST_KEYS = _PART_KEYS | {"members", "member_key", "member_attribute"}
_TOP_KEYS = {"mapping", "variables", "source", "anchor", "classify", "rdn", "person", "list",
             "export"}
_PERSON_TYPES = ("contact", "disabled-user", "enabled-user")
_LIST_TYPES = ("contact", "group")
_SECTION_KEYS = {
    "mapping": {"name", "description"},
    "source": {"filter", "attributes"},
    "anchor": {"value"},
    "classify": {"list", "skip"},
    "rdn": {"attribute", "value"},
}


# -- where keys are ----------------------------------------------------------

_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$")
_PART = r"""(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')"""
_KEY = re.compile(rf"^\s*({_PART}(?:\s*\.\s*{_PART})*)\s*=")
_INLINE_KEY = re.compile(r"""(?:[{,]\s*)((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))\s*=""")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'[^\']*\'')


def _key_parts(text: str) -> list[str]:
    parts = re.findall(r"""[A-Za-z0-9_-]+|"[^"]*"|'[^']*'""", text)
    return [p[1:-1] if p[:1] in "\"'" else p for p in parts]


def key_lines(text: str) -> dict[str, int]:
    """Line numbers of the keys of a TOML document, by dotted path.

    tomllib gives no positions, so the file text is scanned: table
    headers, ``key =`` lines (dotted and quoted keys), the keys of inline
    tables, and the items of arrays (``key[0]``). Lines inside multi-line
    strings are skipped. Good enough to point at the key a problem is about.
    """
    lines: dict[str, int] = {}
    table: list[str] = []
    in_string: str | None = None
    array_key: str | None = None
    array_index = 0
    depth = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if in_string:
            if in_string in line:
                in_string = None
            continue
        if array_key is not None:
            for _ in _STRING.finditer(line.split("#", 1)[0]):
                lines.setdefault(f"{array_key}[{array_index}]", number)
                array_index += 1
            depth += line.count("[") - line.count("]")
            if depth <= 0:
                array_key = None
            continue
        header = _HEADER.match(line)
        if header and not _KEY.match(line):
            table = _key_parts(header.group(1))
            lines.setdefault(".".join(table), number)
            continue
        key = _KEY.match(line)
        if not key:
            continue
        path = table + _key_parts(key.group(1))
        dotted = ".".join(path)
        lines.setdefault(dotted, number)
        rest = line[key.end():]
        for marker in ('"""', "'''"):
            if rest.strip().startswith(marker) and rest.count(marker) == 1:
                in_string = marker
        stripped = rest.split("#", 1)[0].strip()
        if stripped.startswith("{"):
            for inline in _INLINE_KEY.finditer(stripped):
                lines.setdefault(f"{dotted}.{_key_parts(inline.group(1))[0]}", number)
        elif stripped.startswith("["):
            body = stripped[1:]
            index = 0
            for _ in _STRING.finditer(body):
                lines.setdefault(f"{dotted}[{index}]", number)
                index += 1
            depth = stripped.count("[") - stripped.count("]")
            if depth > 0:
                array_key, array_index = dotted, index
    return lines


# -- the mapping --------------------------------------------------------------

@dataclass
class Part:
    """What one kind of entry (person or list) of one type gets."""

    object_classes: list[str]
    attributes: dict[str, Template]
    target_address: Template | None
    proxy_addresses: list[Template]
    remove: list[str]

    def owned(self, rdn_attribute: str, extra: Iterable[str] = ()) -> frozenset[str]:
        """Lower-case names of the attributes dirsync writes (and so may change)."""
        names = {a.lower() for a in self.attributes} | {a.lower() for a in self.remove}
        names |= {rdn_attribute.lower(), ANCHOR_ATTR.lower(), SOURCE_ATTR.lower()}
        if self.target_address is not None:
            names.add("targetaddress")
        if self.proxy_addresses:
            names.add("proxyaddresses")
        names |= {e.lower() for e in extra}
        return frozenset(names)


@dataclass
class Mapped:
    """One source entry after mapping: everything but its DN's container."""

    anchor: str
    kind: str
    rdn_value: str
    attrs: dict[str, list[bytes]]
    object_classes: list[str]
    #: For a list in group mode: the source's references to its members.
    members: list[str] | None = None


@dataclass
class Mapping:
    """A loaded and compiled mapping file."""

    path: Path
    name: str
    description: str
    digest: str
    variables: dict[str, str]
    source_filter: str | None
    source_attributes: list[str]
    anchor: Template
    is_list: Expression | None
    skip: Expression | None
    rdn_attribute: str
    rdn: Template
    persons: dict[str, Part]
    lists: dict[str, Part]
    members: Expression | None
    member_key: str
    member_key_template: Template | None
    member_attribute: str
    lines: dict[str, int] = field(default_factory=dict)
    #: The ``[export]`` section (hub -> foreign), if the mapping has one.
    export: ExportMapping | None = None

    def where(self, key: str) -> str:
        """``file:line: key`` for messages about ``key``."""
        line = self.line_of(key)
        return f"{self.path}:{line}: {key}" if line else f"{self.path}: {key}"

    def line_of(self, key: str) -> int | None:
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key.rsplit(".", 1)[0] if "." in key else ""
        return None

    def templates(self) -> Iterable[Template | Expression]:
        yield self.anchor
        yield self.rdn
        for item in (self.is_list, self.skip, self.members, self.member_key_template):
            if item is not None:
                yield item
        for part in (*self.persons.values(), *self.lists.values()):
            yield from part.attributes.values()
            if part.target_address is not None:
                yield part.target_address
            yield from part.proxy_addresses

    def source_names(self) -> dict[str, list[str]]:
        """Every source attribute a template reads, with the keys that read it."""
        found: dict[str, list[str]] = {}
        for item in self.templates():
            for name in item.attributes:
                found.setdefault(name, []).append(item.key)
        return found

    def check_source_names(self, known: Iterable[str], what: str) -> list[str]:
        """Problems for source attributes the templates read that ``known`` lacks.

        ``known`` is every attribute the source can have (a CSV file's
        columns, a server's attribute types); ``what`` says what it is.
        """
        names = {k.lower() for k in known}
        problems: list[str] = []
        for name, keys in sorted(self.source_names().items()):
            if name.lower() not in names:
                # Each person type shares the [person] templates: say each key once.
                for key in dict.fromkeys(keys):
                    problem = f"{self.where(key)}: unknown source attribute {name!r} ({what})"
                    if problem not in problems:
                        problems.append(problem)
        return problems

    def select(self, recipients: str, lists: str) -> Selected:
        return Selected(self, self.persons[recipients],
                        self.lists.get(lists) if lists != "skip" else None, lists)


@dataclass
class Selected:
    """A mapping with one recipient type and one list mode chosen."""

    mapping: Mapping
    person: Part
    list_part: Part | None
    list_mode: str

    @property
    def rdn_attribute(self) -> str:
        return self.mapping.rdn_attribute

    def owned(self, kind: str) -> frozenset[str]:
        if kind == KIND_LIST:
            assert self.list_part is not None
            extra = [self.mapping.member_attribute] if self.list_mode == "group" else []
            owned = self.list_part.owned(self.rdn_attribute, extra)
            if self.list_mode == "group":
                # A group is expanded by the hub: it has no target address.
                owned = owned - {"targetaddress"}
            return owned
        return self.person.owned(self.rdn_attribute)

    def all_owned(self) -> frozenset[str]:
        owned = self.owned(KIND_PERSON)
        if self.list_part is not None:
            owned |= self.owned(KIND_LIST)
        return owned

    def view(self, entry: Entry, **extra: Any) -> SourceView:
        return SourceView(entry, self.mapping.variables, **extra)

    def anchor(self, view: SourceView) -> str:
        return self.mapping.anchor.first(view)

    def kind(self, view: SourceView) -> str | None:
        """``person``, ``list``, or None when the entry is skipped."""
        mapping = self.mapping
        if mapping.skip is not None and mapping.skip.truth(view):
            return None
        is_list = mapping.is_list is not None and mapping.is_list.truth(view)
        if is_list and self.list_part is None:
            return None
        return KIND_LIST if is_list else KIND_PERSON

    def member_key(self, view: SourceView, anchor: str) -> str:
        """What a list's member reference must equal to name this entry."""
        if self.mapping.member_key == "anchor":
            return anchor
        if self.mapping.member_key == "dn":
            return view.entry.dn
        assert self.mapping.member_key_template is not None
        return self.mapping.member_key_template.first(view)

    def map(self, view: SourceView, anchor: str, kind: str) -> Mapped:
        """Map one source entry (raises :class:`TemplateError` naming the key)."""
        part = self.list_part if kind == KIND_LIST else self.person
        assert part is not None
        rdn_value = self.mapping.rdn.first(view)
        attrs: dict[str, list[bytes]] = {}
        for name, template in part.attributes.items():
            values = template.values(view)
            if values:
                attrs[name] = _unique(values)
        group = kind == KIND_LIST and self.list_mode == "group"
        if part.target_address is not None and not group:
            target = part.target_address.first(view)
            if target:
                attrs["targetAddress"] = [target.encode("utf-8")]
        proxies: list[str] = []
        for template in part.proxy_addresses:
            proxies.extend(template.values(view))
        if proxies:
            attrs["proxyAddresses"] = _unique(proxies, fold=True)
        members = None
        if group and self.mapping.members is not None:
            members = self.mapping.members.strings(view)
        elif group:
            members = []
        return Mapped(anchor, kind, rdn_value, attrs, list(part.object_classes), members)


def _unique(values: list[str], fold: bool = False) -> list[bytes]:
    if len(values) == 1:
        return [values[0].encode("utf-8")]   # most attributes: nothing to compare
    seen: set[str] = set()
    out = []
    for value in values:
        key = value.casefold() if fold else value
        if key not in seen:
            seen.add(key)
            out.append(value.encode("utf-8"))
    return out


# -- loading ------------------------------------------------------------------

def load_mapping(path: str | Path, variables: MappingABC[str, str] | None = None) -> Mapping:
    """Load and compile a mapping; raises :class:`ConfigError` listing every problem.

    ``variables`` (a connection's) override the mapping's own ``[variables]``.
    """
    mapping_path = Path(path)
    try:
        raw = mapping_path.read_bytes()
        text = raw.decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"{mapping_path}: cannot read the mapping: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{mapping_path}: not UTF-8 text: {exc.reason}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{mapping_path}: not valid TOML: {exc}") from exc
    loader = _Loader(mapping_path, key_lines(text), dict(variables or {}))
    mapping = loader.load(data, hashlib.sha256(raw).hexdigest())
    if loader.problems or mapping is None:
        raise ConfigError(loader.problems or [f"{mapping_path}: not a usable mapping"])
    return mapping


class _Loader(Loader):
    def load(self, data: dict[str, Any], digest: str) -> Mapping | None:
        for key in data:
            if key not in _TOP_KEYS:
                self.problem(key, f"unknown section (known: {', '.join(sorted(_TOP_KEYS))})")
        info = self.table(data, "mapping", _SECTION_KEYS["mapping"])
        raw_vars = self.table(data, "variables")
        for name, value in raw_vars.items():
            if not isinstance(value, str):
                self.problem(f"variables.{name}", "must be a string")
            else:
                self.variables[name] = value
        self.variables.update(self.overrides)
        source = self.table(data, "source", _SECTION_KEYS["source"])
        anchor_table = self.table(data, "anchor", _SECTION_KEYS["anchor"], required=True)
        classify = self.table(data, "classify", _SECTION_KEYS["classify"])
        rdn_table = self.table(data, "rdn", _SECTION_KEYS["rdn"], required=True)

        anchor = None
        anchor_source = self.string(anchor_table, "value", "anchor", required="anchor" in data)
        if anchor_source is not None:
            anchor = self.template(anchor_source, "anchor.value")
        is_list = skip = None
        if (text := self.string(classify, "list", "classify")) is not None:
            is_list = self.expression(text, "classify.list")
        if (text := self.string(classify, "skip", "classify")) is not None:
            skip = self.expression(text, "classify.skip")
        rdn_attribute = self.string(rdn_table, "attribute", "rdn") or "cn"
        if not ATTR_NAME.match(rdn_attribute) or ";" in rdn_attribute:
            self.problem("rdn.attribute", f"{rdn_attribute!r} is not an attribute name")
        rdn = None
        rdn_source = self.string(rdn_table, "value", "rdn", required="rdn" in data)
        if rdn_source is not None:
            rdn = self.template(rdn_source, "rdn.value")

        person = self.table(data, "person", _PART_KEYS | set(_PERSON_TYPES), required=True)
        persons = {t: self.part(person, "person", t, _PERSON_TYPES) for t in _PERSON_TYPES}
        list_table = self.table(data, "list", _LIST_KEYS | set(_LIST_TYPES))
        lists = ({t: self.part(list_table, "list", t, _LIST_TYPES) for t in _LIST_TYPES}
                 if list_table else {})
        members = None
        if (text := self.string(list_table, "members", "list")) is not None:
            members = self.expression(text, "list.members")
        member_key = self.string(list_table, "member_key", "list") or "anchor"
        member_key_template = None
        if member_key not in ("anchor", "dn"):
            member_key_template = self.template(member_key, "list.member_key")
        member_attribute = self.string(list_table, "member_attribute", "list") or "member"
        if is_list is not None and not list_table:
            self.problem("classify.list", "lists are classified but the mapping has no [list]")
        filter_text = self.string(source, "filter", "source")
        if filter_text is not None and not (filter_text.startswith("(")
                                            and filter_text.endswith(")")):
            self.problem("source.filter", f"{filter_text!r} is not an LDAP filter in parentheses")
        export = None
        if "export" in data:
            export = load_export(self, data["export"])
        if self.problems or any(p is None for p in (*persons.values(), *lists.values())) \
                or anchor is None or rdn is None:
            return None
        return Mapping(
            path=self.path,
            name=self.string(info, "name", "mapping") or self.path.stem,
            description=self.string(info, "description", "mapping") or "",
            digest=digest,
            variables=self.variables,
            source_filter=filter_text,
            source_attributes=self.strings(source, "attributes", "source"),
            anchor=anchor,
            is_list=is_list,
            skip=skip,
            rdn_attribute=rdn_attribute,
            rdn=rdn,
            persons={k: v for k, v in persons.items() if v is not None},
            lists={k: v for k, v in lists.items() if v is not None},
            members=members,
            member_key=member_key,
            member_key_template=member_key_template,
            member_attribute=member_attribute,
            lines=self.lines,
            export=export,
        )

    def part(self, section: dict[str, Any], kind: str, type_name: str,
             types: tuple[str, ...]) -> Part | None:
        """The common keys of [person] / [list] merged with those of one type."""
        own = section.get(type_name, {})
        if not isinstance(own, dict):
            self.problem(f"{kind}.{type_name}", "must be a table")
            own = {}
        allowed = _PART_KEYS
        for name in own:
            if name not in allowed:
                self.problem(f"{kind}.{type_name}.{name}",
                             f"unknown key (known: {', '.join(sorted(allowed))})")
        classes: list[str] = []
        attributes: dict[str, Template] = {}
        target: Template | None = None
        proxies: list[Template] = []
        remove: list[str] = []
        ok = True
        for where, table in ((kind, section), (f"{kind}.{type_name}", own)):
            for cls in self.strings(table, "object_classes", where):
                if cls.lower() not in {c.lower() for c in classes}:
                    classes.append(cls)
            raw_attrs = table.get("attributes", {})
            if not isinstance(raw_attrs, dict):
                self.problem(f"{where}.attributes", "must be a table of templates")
                raw_attrs = {}
            for name, source in raw_attrs.items():
                key = f"{where}.attributes.{name}"
                if not ATTR_NAME.match(name):
                    self.problem(key, f"{name!r} is not an attribute name")
                    continue
                if name.lower() in ("objectclass", "dirsyncanchor", "dirsyncsource",
                                    "targetaddress", "proxyaddresses"):
                    self.problem(key, f"{name} is written by dirsync itself; use "
                                 "object_classes, target_address or proxy_addresses")
                    continue
                if not isinstance(source, str):
                    self.problem(key, "must be a template string")
                    continue
                compiled = self.template(source, key)
                if compiled is None:
                    ok = False
                    continue
                for existing in [k for k in attributes if k.lower() == name.lower()]:
                    del attributes[existing]
                attributes[name] = compiled
            if (text := self.string(table, "target_address", where)) is not None:
                target = self.template(text, f"{where}.target_address")
            raw_proxies = table.get("proxy_addresses")
            if raw_proxies is not None:
                if isinstance(raw_proxies, str):
                    raw_proxies = [raw_proxies]
                if not isinstance(raw_proxies, list):
                    self.problem(f"{where}.proxy_addresses", "must be a list of templates")
                    raw_proxies = []
                compiled_proxies = []
                for i, source in enumerate(raw_proxies):
                    if not isinstance(source, str):
                        self.problem(f"{where}.proxy_addresses[{i}]", "must be a template")
                        continue
                    item = self.template(source, f"{where}.proxy_addresses[{i}]")
                    if item is not None:
                        compiled_proxies.append(item)
                # A type's own list replaces the common one.
                proxies = compiled_proxies
            for name in self.strings(table, "remove", where):
                if not ATTR_NAME.match(name):
                    self.problem(f"{where}.remove", f"{name!r} is not an attribute name")
                else:
                    remove.append(name)
        if not ok:
            return None
        if not classes:
            self.problem(f"{kind}.object_classes",
                         f"no object classes for {kind}s of type {type_name}")
            return None
        return Part(classes, attributes, target, proxies, remove)


def fingerprint(mapping: Mapping, **settings: Any) -> str:
    """What the mapped result depends on besides the source: a change means a full run."""
    digest = hashlib.sha256(mapping.digest.encode())
    digest.update(repr(sorted(mapping.variables.items())).encode())
    for key in sorted(settings):
        digest.update(f"\0{key}={settings[key]!r}".encode())
    return digest.hexdigest()
