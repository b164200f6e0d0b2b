"""One delivery attempt for one queued message: translate, route, hand on, report.

For every recipient still pending the agent resolves its candidate
addresses through the hub, lets the router choose, and asks the chosen hop
for the recipient's address there; the sender is translated for each hop's
address type. Recipients going to the same hop with the same sender travel
together. Outcomes are recorded per recipient, so a later attempt skips those
already handed on.

Failures follow the connector rules (seeds/004, "Address Mapping Issues"):
a recipient that cannot be mapped gets a non-delivery report of its own; a
sender that cannot be mapped fails every recipient of the message the relay
handles, because there is no address the foreign side could reply to.

Order of writes: reports are queued before the journal records the outcomes
they report, so a crash in between can repeat a report but never lose one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from dirsync.addresses.x400 import ORAddress
from dirsync.relay.addresses import X400, AddressSyntaxError, parse_typed
from dirsync.relay.config import RelayConfig
from dirsync.relay.errors import AmbiguousAddress, HubUnavailable, Unmappable
from dirsync.relay.gateway import X400Hop
from dirsync.relay.message import received_header
from dirsync.relay.paths import is_mailbox
from dirsync.relay.queue import (
    DELIVERED,
    FAILED,
    RELAYED,
    Queue,
    QueuedMessage,
    Recipient,
    new_id,
)
from dirsync.relay.reports import RecipientReport, build_report, is_report_content
from dirsync.relay.routing import Choice, Router
from dirsync.relay.smtp_hop import Outcome, OutRecipient, SmtpHop
from dirsync.relay.tracking import Tracker
from dirsync.relay.translate import Resolution, Translator

log = logging.getLogger("dirsync.relay.delivery")

Hop = SmtpHop | X400Hop


@dataclass
class _Plan:
    index: int
    rcpt: Recipient
    resolution: Resolution
    choice: Choice
    hop: Hop
    address: str | ORAddress  # the recipient's address at the hop
    sender: str | ORAddress | None = None

    @property
    def final_recipient(self) -> str:
        if isinstance(self.address, ORAddress):
            return f"x400; {self.address.to_std()}"
        return f"rfc822; {self.address}"


@dataclass
class _Attempt:
    """What one attempt has decided so far, written out at its end."""

    msg: QueuedMessage
    content: bytes
    now: float
    records: list[dict[str, object]] = field(default_factory=list)
    reports: list[RecipientReport] = field(default_factory=list)
    deferred: list[tuple[int, Recipient, str, str]] = field(default_factory=list)


class DeliveryAgent:
    """Runs attempts; ``submit(queue_id, due)`` schedules the reports it queues."""

    def __init__(self, config: RelayConfig, queue: Queue, translator: Translator,
                 router: Router, hops: Mapping[str, Hop], tracker: Tracker,
                 submit: Callable[[str, float], None]) -> None:
        self.config = config
        self.queue = queue
        self.translator = translator
        self.router = router
        self.hops = hops
        self.tracker = tracker
        self.submit = submit

    # -- the attempt -----------------------------------------------------
    def attempt(self, queue_id: str) -> float | None:
        """Try every pending recipient once; the time of the next attempt, or None when done."""
        msg = self.queue.get(queue_id)
        if msg is None:
            return None
        at = _Attempt(msg, msg.read_content(), time.time())
        pending = msg.pending()
        if msg.attempts == 0 and msg.hops > self.config.max_hops:
            for i, rcpt in pending:
                self._fail(at, i, rcpt, "5.4.6", f"routing loop: the message has passed "
                           f"{msg.hops} MTAs (limit {self.config.max_hops})")
            pending = []
        try:
            plans = self._plan_all(at, pending)
            self._translate_senders(at, plans)
        except HubUnavailable as exc:
            for i, rcpt in pending:
                if rcpt.pending:
                    at.deferred.append((i, rcpt, "4.4.3", f"x-local; {exc}"))
            plans = []
        except AmbiguousAddress as exc:
            # The sender: several hub entries claim it, so its address for
            # the hop is not known; the whole message waits.
            for i, rcpt in pending:
                if rcpt.pending:
                    at.deferred.append((i, rcpt, exc.status, f"x-local; sender {exc}"))
            plans = []
        except Unmappable as exc:
            # The sender: every recipient this relay handles fails (seeds/004).
            for i, rcpt in pending:
                if rcpt.pending:
                    self._fail(at, i, rcpt, exc.status, str(exc))
            plans = []
        self._deliver(at, plans)
        return self._finish(at)

    def _plan_all(self, at: _Attempt, pending: list[tuple[int, Recipient]]) -> list[_Plan]:
        plans = []
        for i, rcpt in pending:
            plan = self._plan(at, i, rcpt)
            if plan is not None:
                plans.append(plan)
        return plans

    def _plan(self, at: _Attempt, i: int, rcpt: Recipient) -> _Plan | None:
        msg = at.msg
        if rcpt.error is not None:
            final = None
            if rcpt.arrived_as and rcpt.arrived_as.upper().startswith("X400:"):
                final = f"x400; {rcpt.address}"
            self._fail(at, i, rcpt, rcpt.error[0], rcpt.error[1], final=final)
            return None
        arrived = None
        if rcpt.arrived_as:
            try:
                arrived = parse_typed(rcpt.arrived_as)
            except AddressSyntaxError:
                arrived = None
        resolution = self.translator.resolve(rcpt.address, arrived_as=arrived)
        if resolution.error is not None and resolution.error.status.startswith("4."):
            at.deferred.append((i, rcpt, resolution.error.status,
                                f"x-local; {resolution.error}"))
            return None
        if resolution.error is not None:
            self._fail(at, i, rcpt, resolution.error.status, str(resolution.error))
            return None
        choice = self.router.choose(resolution.candidates)
        if choice is None:
            if resolution.entry is not None:
                shown = ", ".join(str(c) for c in resolution.candidates) or "none"
                self._fail(at, i, rcpt, "5.1.1", f"{rcpt.address} cannot be mapped: no route "
                           f"for any of its addresses ({shown})")
            else:
                self._fail(at, i, rcpt, "5.4.4", "no route for "
                           + ", ".join(str(c) for c in resolution.candidates))
            return None
        hop = self.hops[choice.route.hop]
        address = choice.address
        self.tracker.event(
            "translated", msg.id, rcpt.address, to=str(address),
            one_off=address.one_off() if resolution.entry is None and not address.is_smtp
            else None, entry=resolution.entry.dn if resolution.entry else None,
            via=resolution.via)
        try:
            out = hop.recipient_form(address)
        except Unmappable as exc:
            self._fail(at, i, rcpt, exc.status, str(exc))
            return None
        shown = out.to_std() if isinstance(out, ORAddress) else out
        self.tracker.event("routed", msg.id, rcpt.address, route=choice.route.config.address_space,
                           cost=choice.route.cost, hop=hop.name, hop_address=shown)
        return _Plan(i, rcpt, resolution, choice, hop, out)

    def _translate_senders(self, at: _Attempt, plans: list[_Plan]) -> None:
        cache: dict[tuple[str, str, bool], str | ORAddress | None] = {}
        for plan in plans:
            out_type = X400 if isinstance(plan.hop, X400Hop) else plan.choice.route.type
            require = plan.choice.route.config.require_sender_proxy
            key = (plan.hop.name, out_type, require)
            if key not in cache:
                typed = self.translator.sender_for(at.msg.sender, out_type,
                                                   require_proxy=require)
                cache[key] = plan.hop.sender_form(typed)
            plan.sender = cache[key]

    def _deliver(self, at: _Attempt, plans: list[_Plan]) -> None:
        groups: dict[tuple[str, str], list[_Plan]] = {}
        for plan in plans:
            sender = plan.sender
            shown = sender.to_std() if isinstance(sender, ORAddress) else (sender or "")
            groups.setdefault((plan.hop.name, shown), []).append(plan)
        msg = at.msg
        for group in groups.values():
            hop = group[0].hop
            if isinstance(hop, SmtpHop):
                outcomes = hop.deliver(
                    str(group[0].sender or ""),
                    [OutRecipient(str(p.address), p.rcpt.dsn, p.rcpt.address) for p in group],
                    at.content, ret=msg.ret, envid=msg.envid, body8bit=msg.body == "8BITMIME",
                    smtputf8=msg.smtputf8)
            else:
                originator = group[0].sender
                outcomes = hop.deliver(originator if isinstance(originator, ORAddress) else None,
                                       [p.address for p in group  # type: ignore[misc]
                                        if isinstance(p.address, ORAddress)],
                                       at.content, queue_id=msg.id)
            for plan, outcome in zip(group, outcomes):
                self._record(at, plan, outcome)

    def _record(self, at: _Attempt, plan: _Plan, outcome: Outcome) -> None:
        msg, rcpt, i = at.msg, plan.rcpt, plan.index
        if outcome.ok:
            state = DELIVERED if isinstance(plan.hop, X400Hop) else RELAYED
            at.records.append({"r": i, "state": state, "status": outcome.status,
                               "diag": outcome.diagnostic, "final": plan.final_recipient,
                               "mta": outcome.remote_mta})
            self.tracker.event(state, msg.id, rcpt.address, hop=plan.hop.name,
                               hop_address=plan.final_recipient.split("; ", 1)[1],
                               status=outcome.status, reply=outcome.diagnostic)
            if self._reportable(at) and rcpt.dsn.wants("SUCCESS") and not outcome.dsn_passed:
                at.reports.append(RecipientReport(
                    final_recipient=plan.final_recipient, action="relayed", status="2.0.0",
                    original_recipient=_orcpt(rcpt), remote_mta=outcome.remote_mta,
                    diagnostic=outcome.diagnostic, last_attempt=at.now,
                    text=f"Handed to {plan.hop.name}, which does not confirm delivery."))
        elif outcome.state == "failed":
            self._fail(at, i, rcpt, outcome.status, outcome.diagnostic or "refused",
                       final=plan.final_recipient, remote_mta=outcome.remote_mta,
                       diagnostic=outcome.diagnostic)
        else:
            at.deferred.append((i, rcpt, outcome.status, outcome.diagnostic or "deferred"))

    # -- outcomes --------------------------------------------------------
    def _reportable(self, at: _Attempt) -> bool:
        # Never a report about a report (RFC 3461 section 6.2).
        return not at.msg.is_report and not is_report_content(at.content)

    def _fail(self, at: _Attempt, i: int, rcpt: Recipient, status: str, text: str, *,
              final: str | None = None, remote_mta: str | None = None,
              diagnostic: str | None = None) -> None:
        final = final or f"rfc822; {rcpt.address}"
        diagnostic = diagnostic or f"x-local; {text}"
        at.records.append({"r": i, "state": FAILED, "status": status, "diag": diagnostic,
                           "final": final, "mta": remote_mta})
        rcpt.state = FAILED  # in memory now, so later steps of this attempt skip it
        self.tracker.event("failed", at.msg.id, rcpt.address, status=status, reason=text)
        if self._reportable(at) and rcpt.dsn.wants("FAILURE"):
            at.reports.append(RecipientReport(
                final_recipient=final, action="failed", status=status,
                original_recipient=_orcpt(rcpt), diagnostic=diagnostic, remote_mta=remote_mta,
                last_attempt=at.now, text=text))

    def _finish(self, at: _Attempt) -> float | None:
        msg, cfg = at.msg, self.config
        deadline = msg.received_at + cfg.max_queue_lifetime
        next_due = min(at.now + cfg.retry_delay(msg.attempts + 1), deadline)
        for i, rcpt, status, reason in at.deferred:
            if at.now >= deadline:
                self._fail(at, i, rcpt, "4.4.7", f"no delivery within "
                           f"{_human(cfg.max_queue_lifetime)}; last error: {reason}",
                           diagnostic=reason)
                continue
            self.tracker.event("deferred", msg.id, rcpt.address, status=status, reason=reason,
                               next_attempt=time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                          time.gmtime(next_due)))
            if rcpt.dsn.delay_explicit and not rcpt.delay_reported and self._reportable(at):
                at.records.append({"r": i, "delayed": True})
                at.reports.append(RecipientReport(
                    final_recipient=f"rfc822; {rcpt.address}", action="delayed",
                    status=status if status.startswith("4.") else "4.0.0",
                    original_recipient=_orcpt(rcpt), diagnostic=reason, last_attempt=at.now,
                    will_retry_until=deadline, text="The relay keeps trying."))
        self._send_report(at)
        still = [i for i, rcpt, _, _ in at.deferred if at.now < deadline]
        if still:
            at.records.append({"attempts": msg.attempts + 1, "next": next_due})
        self.queue.record(msg, at.records)
        if still:
            return next_due
        self.queue.remove(msg)
        return None

    def _send_report(self, at: _Attempt) -> None:
        if not at.reports or not at.msg.sender:
            return
        msg = at.msg
        if not is_mailbox(msg.sender):
            # Queued by an older version or from a bad gateway file: a report
            # to it would carry the bad address into its header fields.
            log.warning("%s: no report to %r: not a valid address", msg.id, msg.sender)
            return
        report = build_report(
            reporting_mta=self.config.hostname, postmaster=self.config.postmaster, to=msg.sender,
            recipients=at.reports, original=at.content, ret=msg.ret, envid=msg.envid,
            arrival=msg.received_at, received_from=msg.client, now=at.now)
        rid = new_id()
        content = received_header(by=self.config.hostname, queue_id=rid, protocol="local",
                                  when=at.now) + report
        queued = self.queue.enqueue(QueuedMessage(id=rid, sender="",
                                                  recipients=[Recipient(msg.sender)],
                                                  origin="report", next_attempt=at.now),
                                    content)
        for r in at.reports:
            self.tracker.event("report_sent", msg.id, r.final_recipient.split("; ", 1)[1],
                               report_id=queued.id, to=msg.sender, action=r.action,
                               status=r.status)
        self.submit(queued.id, at.now)


def _orcpt(rcpt: Recipient) -> str | None:
    if rcpt.dsn.orcpt is None:
        return None
    return f"{rcpt.dsn.orcpt[0]}; {rcpt.dsn.orcpt[1]}"


def _human(seconds: float) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} seconds"

