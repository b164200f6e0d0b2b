"""The ``[export]`` section of a mapping: how a hub recipient becomes a foreign entry.

The import half of a mapping (:mod:`dirsync.mapping.mapfile`) reads foreign
entries; this half reads the hub's users, contacts and groups and says
what the foreign directory gets for each: its RDN (for a CSV file, the
key column), object classes, attributes, and the proxy address of the
foreign type that the recipient update service generates when the
recipient has none (:mod:`dirsync.sync.proxygen`). It also names the two
attributes the export writes on every foreign entry it creates, the
*marker* (the connection's name) and the hub *anchor* (the hub's
``entryUUID``): they tell the export which foreign entries are its own,
and they tell the import not to bring those entries back as contacts.

Templates here see a hub entry through the same :class:`SourceView` as
import templates, plus the names in :data:`EXPORT_NAMES`. Everything is
compiled when the mapping loads; :meth:`ExportMapping.map` is pure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from dirsync.addresses.proxy import parse
from dirsync.entry import Entry
from dirsync.mapping.loader import Loader
from dirsync.mapping.templates import Expression, SourceView, Template
from dirsync.schema import ATTR_NAME

KIND_PERSON = "person"
KIND_LIST = "list"

#: What a hub entry is, as export templates see it in ``kind``.
HUB_USER = "user"
HUB_CONTACT = "contact"
HUB_GROUP = "group"

#: Names export templates see besides the hub entry's attributes.
EXPORT_NAMES = frozenset({"proxy", "proxies", "members", "connection", "kind", "anchor", "dn"})

DEFAULT_FILTER = ("(|(objectClass=inetOrgPerson)(objectClass=groupOfNames)"
                  "(objectClass=groupOfUniqueNames))")
DEFAULT_LIST = "has_class('groupOfNames') or has_class('groupOfUniqueNames')"
DEFAULT_MEMBERS = "values('member') + values('uniqueMember')"
DEFAULT_MARKER = "dirsyncSource"
DEFAULT_ANCHOR = "dirsyncAnchor"

_EXPORT_KEYS = {"filter", "proxy_type", "proxy_address", "marker_attribute",
                "anchor_attribute", "classify", "rdn", "person", "list"}
_CLASSIFY_KEYS = {"list", "skip"}
_RDN_KEYS = {"attribute", "value", "qualifier"}
_PART_KEYS = {"object_classes", "attributes"}
_LIST_KEYS = _PART_KEYS | {"members", "member_attribute"}


@dataclass
class ExportPart:
    """What a foreign entry of one kind (person or list) gets."""

    object_classes: list[str]
    attributes: dict[str, Template]


@dataclass
class ExportMapped:
    """One hub entry mapped for the foreign side, everything but its DN."""

    kind: str
    attrs: dict[str, list[bytes]]
    object_classes: list[str]


@dataclass
class ExportMapping:
    """A compiled ``[export]`` section."""

    filter: str
    is_list: Expression
    skip: Expression | None
    proxy_type: str
    proxy_address: Template
    marker_attribute: str
    anchor_attribute: str
    rdn_attribute: str
    rdn: Template
    person: ExportPart
    list_part: ExportPart | None
    members: Expression
    member_attribute: str | None
    variables: dict[str, str] = field(default_factory=dict)
    #: tells apart two recipients of one name before a number does (docs/export.md)
    rdn_qualifier: Template | None = None

    # -- what the templates read -----------------------------------------
    def templates(self) -> Iterable[Template | Expression]:
        yield self.is_list
        if self.skip is not None:
            yield self.skip
        yield self.proxy_address
        yield self.rdn
        if self.rdn_qualifier is not None:
            yield self.rdn_qualifier
        yield self.members
        for part in (self.person, self.list_part):
            if part is not None:
                yield from part.attributes.values()

    def hub_names(self) -> dict[str, list[str]]:
        """Hub attributes the templates read, with the keys that read them."""
        found: dict[str, list[str]] = {}
        for item in self.templates():
            for name in item.attributes:
                if name not in EXPORT_NAMES:
                    found.setdefault(name, []).append(item.key)
        return found

    def read_attributes(self) -> list[str]:
        """What to ask the hub for: every user attribute and the anchor."""
        return ["*", "entryUUID"]

    def owned(self, *, rdn: bool = True) -> frozenset[str]:
        """Lower-case names of the foreign attributes the export writes (and so may change)."""
        names = {self.marker_attribute.lower(), self.anchor_attribute.lower()}
        if rdn:
            names.add(self.rdn_attribute.lower())
        for part in (self.person, self.list_part):
            if part is not None:
                names |= {a.lower() for a in part.attributes}
        if self.member_attribute:
            names.add(self.member_attribute.lower())
        return frozenset(names)

    # -- mapping ---------------------------------------------------------
    def view(self, entry: Entry, **extra: Any) -> SourceView:
        return SourceView(entry, self.variables, **extra)

    def hub_kind(self, view: SourceView) -> str:
        """user, contact or group: what the hub entry is."""
        if self.is_list.truth(view):
            return HUB_GROUP
        return HUB_CONTACT if view.entry.get("targetAddress") else HUB_USER

    def candidate(self, view: SourceView) -> str:
        """The proxy address the template makes, without its ``TYPE:`` prefix ("" if none)."""
        text = self.proxy_address.first(view)
        kind, sep, rest = text.partition(":")
        if sep and kind.upper() == self.proxy_type:
            text = rest
        return text.strip()

    def map(self, view: SourceView, kind: str) -> ExportMapped:
        """Map one hub entry (raises :class:`TemplateError` naming the key)."""
        part = self.list_part if kind == KIND_LIST else self.person
        assert part is not None
        attrs: dict[str, list[bytes]] = {}
        for name, template in part.attributes.items():
            values = template.values(view)
            if values:
                attrs[name] = _unique(values)
        return ExportMapped(kind, attrs, list(part.object_classes))


def _unique(values: list[str]) -> list[bytes]:
    seen: set[str] = set()
    out = []
    for value in values:
        if value not in seen:
            seen.add(value)
            out.append(value.encode("utf-8"))
    return out


# -- loading ------------------------------------------------------------------

def load_export(loader: Loader, raw: Any) -> ExportMapping | None:
    """Compile an ``[export]`` table; problems go to the loader with file, line and key."""
    if not isinstance(raw, dict):
        loader.problem("export", "must be a table")
        return None
    before = len(loader.problems)
    _known(loader, raw, "export", _EXPORT_KEYS)
    filter_text = loader.string(raw, "filter", "export") or DEFAULT_FILTER
    if not (filter_text.startswith("(") and filter_text.endswith(")")):
        loader.problem("export.filter", f"{filter_text!r} is not an LDAP filter in parentheses")

    classify = _table(loader, raw, "classify", _CLASSIFY_KEYS)
    is_list = loader.expression(loader.string(classify, "list", "export.classify")
                                or DEFAULT_LIST, "export.classify.list")
    skip = None
    if (text := loader.string(classify, "skip", "export.classify")) is not None:
        skip = loader.expression(text, "export.classify.skip")

    proxy_type = (loader.string(raw, "proxy_type", "export", required=True) or "").upper()
    if proxy_type and not (proxy_type.isascii() and proxy_type.replace("-", "").isalnum()):
        loader.problem("export.proxy_type", f"{proxy_type!r} is not an address type such as "
                       "MS, NOTES, GWISE, CCMAIL, X400 or SMTP")
    proxy_address = None
    if (text := loader.string(raw, "proxy_address", "export", required=True)) is not None:
        proxy_address = loader.template(text, "export.proxy_address")
        prefix, sep, _ = text.partition(":")
        if sep and "{" not in prefix and proxy_type and prefix.upper() != proxy_type:
            loader.problem("export.proxy_address", f"makes {prefix}: addresses, but "
                           f"proxy_type is {proxy_type}")

    marker = loader.string(raw, "marker_attribute", "export") or DEFAULT_MARKER
    anchor = loader.string(raw, "anchor_attribute", "export") or DEFAULT_ANCHOR
    for key, name in (("marker_attribute", marker), ("anchor_attribute", anchor)):
        if not _attribute_name(name):
            loader.problem(f"export.{key}", f"{name!r} is not an attribute (or column) name")
    if marker.lower() == anchor.lower():
        loader.problem("export.anchor_attribute", "must differ from marker_attribute")

    if "rdn" not in raw:
        loader.problem("export.rdn", "missing (the foreign entry's name: attribute and value)")
    rdn_table = _table(loader, raw, "rdn", _RDN_KEYS)
    rdn_attribute = loader.string(rdn_table, "attribute", "export.rdn") or "cn"
    if not ATTR_NAME.match(rdn_attribute) or ";" in rdn_attribute:
        loader.problem("export.rdn.attribute", f"{rdn_attribute!r} is not an attribute name")
    rdn = None
    if (text := loader.string(rdn_table, "value", "export.rdn", required=True)) is not None:
        rdn = loader.template(text, "export.rdn.value")
    qualifier = None
    if (text := loader.string(rdn_table, "qualifier", "export.rdn")) is not None:
        qualifier = loader.template(text, "export.rdn.qualifier")

    if "person" not in raw:
        loader.problem("export.person", "missing (what a user or contact becomes)")
    person = _part(loader, raw.get("person", {}), "export.person", _PART_KEYS)
    list_part = None
    member_attribute = None
    list_raw = raw.get("list")
    members_text = DEFAULT_MEMBERS
    if list_raw is not None:
        list_part = _part(loader, list_raw, "export.list", _LIST_KEYS)
        if isinstance(list_raw, dict):
            members_text = loader.string(list_raw, "members", "export.list") or DEFAULT_MEMBERS
            member_attribute = loader.string(list_raw, "member_attribute", "export.list")
            if member_attribute is not None and not ATTR_NAME.match(member_attribute):
                loader.problem("export.list.member_attribute",
                               f"{member_attribute!r} is not an attribute name")
    members = loader.expression(members_text, "export.list.members")

    if len(loader.problems) > before or is_list is None or proxy_address is None \
            or rdn is None or person is None or members is None \
            or (list_raw is not None and list_part is None):
        return None
    return ExportMapping(
        filter=filter_text, is_list=is_list, skip=skip, proxy_type=proxy_type,
        proxy_address=proxy_address, marker_attribute=marker, anchor_attribute=anchor,
        rdn_attribute=rdn_attribute, rdn=rdn, person=person, list_part=list_part,
        members=members, member_attribute=member_attribute, variables=loader.variables,
        rdn_qualifier=qualifier)


def _known(loader: Loader, table: dict[str, Any], where: str, allowed: set[str]) -> None:
    for name in table:
        if name not in allowed:
            loader.problem(f"{where}.{name}",
                           f"unknown key (known: {', '.join(sorted(allowed))})")


def _table(loader: Loader, raw: dict[str, Any], key: str, allowed: set[str]) -> dict[str, Any]:
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        loader.problem(f"export.{key}", "must be a table")
        return {}
    _known(loader, value, f"export.{key}", allowed)
    return value


def _attribute_name(name: str) -> bool:
    # A CSV column may hold spaces ("Sync Source"); an LDAP attribute may not,
    # which the foreign directory itself says when it refuses the entry.
    return bool(name.strip()) and name == name.strip() and ":" not in name


def _part(loader: Loader, raw: Any, where: str, allowed: set[str]) -> ExportPart | None:
    if not isinstance(raw, dict):
        loader.problem(where, "must be a table")
        return None
    _known(loader, raw, where, allowed)
    classes = loader.strings(raw, "object_classes", where)
    raw_attrs = raw.get("attributes", {})
    if not isinstance(raw_attrs, dict):
        loader.problem(f"{where}.attributes", "must be a table of templates")
        return None
    attributes: dict[str, Template] = {}
    ok = True
    for name, source in raw_attrs.items():
        key = f"{where}.attributes.{name}"
        if not _attribute_name(name):
            loader.problem(key, f"{name!r} is not an attribute (or column) name")
            ok = False
            continue
        if name.lower() == "objectclass":
            loader.problem(key, "objectClass is written from object_classes")
            ok = False
            continue
        if not isinstance(source, str):
            loader.problem(key, "must be a template string")
            ok = False
            continue
        compiled = loader.template(source, key)
        if compiled is None:
            ok = False
            continue
        attributes[name] = compiled
    if not raw_attrs:
        loader.problem(f"{where}.attributes", "no attributes: a foreign entry needs some")
        return None
    return ExportPart(classes, attributes) if ok else None


def proxy_of(values: Iterable[str], kind: str) -> tuple[str | None, list[str]]:
    """(primary address, every address) of type ``kind`` among proxy address values."""
    primary = None
    found: list[str] = []
    for value in values:
        try:
            proxy = parse(value)
        except ValueError:
            continue
        if proxy.type != kind:
            continue
        if proxy.primary and primary is None:
            primary = proxy.address
            found.insert(0, proxy.address)
        else:
            found.append(proxy.address)
    return primary, found


def exported_by(export: ExportMapping | None, connection: str) -> Callable[[Entry], bool] | None:
    """For the import: does a foreign entry carry this connection's export marker?

    Such an entry is a hub recipient the connection exported, come back in
    the foreign system's next export: it is not imported as a new contact.
    """
    if export is None:
        return None
    attr = export.marker_attribute
    wanted = connection.casefold()

    def carries(entry: Entry) -> bool:
        return any(v.decode("utf-8", "replace").strip().casefold() == wanted
                   for v in entry.get(attr))
    return carries
