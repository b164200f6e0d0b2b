"""What ``dirsync relay route ADDRESS`` shows: the translation and the chosen route.

The same translator, router and hops as the running relay, without the SMTP
front or the queue: resolve the address through the hub, list every
candidate address with the routes that match it, name the route chosen and
the address the recipient gets at its hop, and (with a sender) the sender's
address there.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from dirsync.addresses.imcea import encode_imcea
from dirsync.addresses.x400 import ORAddress
from dirsync.relay.addresses import SMTP, X400, TypedAddress, parse_any
from dirsync.relay.delivery import Hop
from dirsync.relay.errors import Unmappable
from dirsync.relay.gateway import X400Hop
from dirsync.relay.translate import Translator


@dataclass
class Candidate:
    address: str
    routes: list[str] = field(default_factory=list)


@dataclass
class Explanation:
    """The answer for one address; ``status`` is set when it would get a report."""

    input: str
    address: str
    via: str = "smtp"
    hub_entry: str | None = None
    one_off: str | None = None
    candidates: list[Candidate] = field(default_factory=list)
    route: str | None = None
    cost: int | None = None
    hop: str | None = None
    hop_kind: str | None = None
    hop_address: str | None = None
    sender: str | None = None
    hop_sender: str | None = None
    status: str | None = None
    problem: str | None = None

    @property
    def routed(self) -> bool:
        return self.status is None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        out = [f"address:     {self.address}"]
        if self.hub_entry:
            out.append(f"hub entry:   {self.hub_entry}")
        if self.one_off:
            out.append(f"one-off:     {self.one_off}")
        for c in self.candidates:
            routes = "; ".join(c.routes) if c.routes else "no route"
            out.append(f"candidate:   {c.address}  [{routes}]")
        if self.route:
            out.append(f"route:       {self.route} (cost {self.cost})")
            out.append(f"next hop:    {self.hop} ({self.hop_kind})")
            out.append(f"hop address: {self.hop_address}")
        if self.sender is not None:
            out.append(f"sender:      {self.sender or '<>'} -> {self.hop_sender or '<>'}")
        if self.status and self.status.startswith("4."):
            out.append(f"result:      deferred {self.status}: {self.problem}")
        elif self.status:
            out.append(f"result:      non-delivery report {self.status}: {self.problem}")
        return out


def _shown(value: str | ORAddress | None) -> str | None:
    if isinstance(value, ORAddress):
        return value.to_std()
    return value


def explain(translator: Translator, hops: dict[str, Hop], text: str,
            sender: str | None = None) -> Explanation:
    """Translate and route one address the way the relay would."""
    typed = parse_any(text)
    if typed.type == X400:
        typed = TypedAddress(X400, typed.canonical(), typed.display)
    if typed.is_smtp:
        address = typed.value
        resolution = translator.resolve(address)
    else:
        # A foreign address arrives encapsulated in the relay's own domain.
        address = encode_imcea(typed.type, typed.value, translator.imcea_domain)
        resolution = translator.resolve(address)
    exp = Explanation(input=text, address=address, via=resolution.via,
                      hub_entry=resolution.entry.dn if resolution.entry else None)
    if resolution.error is not None:
        exp.status, exp.problem = resolution.error.status, str(resolution.error)
        return exp
    router = translator.router
    for cand in resolution.candidates:
        exp.candidates.append(Candidate(str(cand), [str(r) for r in router.matching(cand)]))
    choice = router.choose(resolution.candidates)
    if choice is None:
        exp.status = "5.1.1" if resolution.entry is not None else "5.4.4"
        exp.problem = "no route for any candidate address"
        return exp
    chosen = choice.address
    if resolution.entry is None and chosen.type != SMTP:
        display = typed.display or chosen.display
        exp.one_off = TypedAddress(chosen.type, chosen.value, display).one_off()
    hop = hops[choice.route.hop]
    exp.route, exp.cost = choice.route.config.address_space, choice.route.cost
    exp.hop, exp.hop_kind = hop.name, hop.kind
    try:
        exp.hop_address = _shown(hop.recipient_form(chosen))
    except Unmappable as exc:
        exp.status, exp.problem = exc.status, str(exc)
        return exp
    if sender is not None:
        exp.sender = sender
        out_type = X400 if isinstance(hop, X400Hop) else choice.route.type
        try:
            typed_sender = translator.sender_for(
                sender, out_type, require_proxy=choice.route.config.require_sender_proxy)
            exp.hop_sender = _shown(hop.sender_form(typed_sender))
        except Unmappable as exc:
            exp.status, exp.problem = exc.status, str(exc)
    return exp
