"""A fuzzer for the SMTP front: generated sessions against a running ``dirsync relay serve``.

Hypothesis generates whole SMTP sessions (EHLO names, MAIL and RCPT paths,
valid ones and ones broken on purpose, ESMTP parameters, garbage command
lines, DATA framings with every bare CR/LF end-of-data variant) and sends
each through a real socket to one relay process with real aiosmtpd hops.

Every session is checked as it runs:

* every command gets a well-formed reply in time (no hung session) and no
  reply is the relay's "error in a hook" 451 (no crash);
* a path broken on purpose is never accepted;
* a recipient outside the relay's address spaces is never accepted;
* data holding a bare CR or LF is never accepted, and after any DATA the
  next command's reply is its own (no smuggled second transaction).

At the end: the relay process is alive and answers, it queued exactly as
many messages as it said 250 to, and every message a hop received went to an
address inside that hop's address space.

The normal suite runs a small fixed budget; the long run is::

    DIRSYNC_FUZZ_CASES=10000 DIRSYNC_FUZZ_REPORT=fuzz.json \\
        .venv/bin/python -m pytest tests/relay/test_fuzz_front.py -q

(``DIRSYNC_FUZZ_REPORT`` writes the figures as JSON; docs/relay.md has them).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .helpers import WAIT, Hub, RawClient, RelayEnv, ServeProcess, Sink, contoso_relay

CASES = int(os.environ.get("DIRSYNC_FUZZ_CASES", "200"))
REPORT = os.environ.get("DIRSYNC_FUZZ_REPORT")

# -- paths -----------------------------------------------------------------------

ATEXT = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~"
QTEXT = [chr(c) for c in range(32, 127) if chr(c) not in '"\\']
KNOWN = ["ted", "bob", "carol", "T.Bremer", "dave", "nobody", "someone", "IMCEAMS-MICROSOFT_PO2_ZED",
         "IMCEASMTP-victim+40elsewhere+2Eexample", "postmaster"]
# The relay's address spaces for SMTP recipients (contoso_relay): example.org
# (the hub and the internal server) and partner.example (the Internet route).
INSIDE = {"example.org", "partner.example"}
DOMAINS = ["example.org", "EXAMPLE.ORG", "partner.example", "Partner.Example", "elsewhere.example",
           "sub.partner.example", "msgw.example.net", "[192.0.2.1]", "[IPv6:2001:db8::1]",
           "example.org.evil.example"]
CONTROLS = [chr(c) for c in [*range(10), *range(11, 32), 127]]  # not LF: it ends a command

atom = st.text(ATEXT, min_size=1, max_size=8)
dot_local = st.lists(atom, min_size=1, max_size=3).map(".".join)
quoted_local = st.lists(st.sampled_from(QTEXT) | st.sampled_from(['\\"', "\\\\", "\\ "]),
                        max_size=10).map(lambda parts: '"' + "".join(parts) + '"')
local = st.sampled_from(KNOWN) | st.sampled_from(KNOWN) | dot_local | quoted_local
# Weighted towards addresses the relay takes, so that sessions reach DATA.
domain = st.sampled_from(["example.org", "partner.example", "partner.example"]) \
    | st.sampled_from(DOMAINS)
mailbox = st.tuples(local, domain).map("@".join)


@dataclass(frozen=True)
class Path_:
    text: str      # what follows "FROM:" or "TO:"
    mailbox: str   # the mailbox inside, when valid
    valid: bool


def _break(draw: st.DrawFn, box: str) -> str:
    """``<box>`` broken in one way that certainly makes it invalid."""
    local_part, _, domain = box.rpartition("@")
    how = draw(st.sampled_from(["control", "no-close", "no-open", "space", "no-domain",
                                "empty-domain", "double-at", "dot-dot", "hyphen", "quote",
                                "two-open", "trailing"]))
    if how == "control":
        i = draw(st.integers(1, len(box)))
        return f"<{box[:i]}{draw(st.sampled_from(CONTROLS))}{box[i:]}>"
    if how == "no-close":
        return f"<{box}"
    if how == "no-open":
        return f"{box}>"
    if how == "space":
        return f"<{local_part.strip(chr(34))} x@{domain}>" if not local_part.startswith('"') \
            else f"<a b@{domain}>"
    if how == "no-domain":
        return "<" + (local_part if local_part.lower() != "postmaster" else "postmaster1") + ">"
    if how == "empty-domain":
        return f"<{local_part}@>"
    if how == "double-at":
        return f"<{local_part}@@{domain}>"
    if how == "dot-dot":
        return f"<{local_part}@a..{domain}>"
    if how == "hyphen":
        return f"<{local_part}@-{domain}>"
    if how == "quote":
        return f'<"{local_part}@{domain}>'
    if how == "two-open":
        return f"<<{box}>"
    return f"<{box}>x"


# Recipients the relay takes: hub addresses, anything at the Internet route's domain.
taken = st.sampled_from(["ted@example.org", "bob@example.org", "carol@example.org",
                         "T.Bremer@Example.ORG"]) | st.tuples(
    dot_local | quoted_local, st.just("partner.example")).map("@".join)


@st.composite
def paths(draw: st.DrawFn) -> Path_:
    box = draw(taken if draw(st.booleans()) else mailbox)
    if draw(st.integers(0, 2)) > 0:
        return Path_(f"<{box}>", box, True)
    return Path_(_break(draw, box), box, False)


BAD_PARAMS = [" FOO=bar", " SIZE=abc", " SIZE=999999999999", "  SIZE=1", " =x", " NOTIFY",
              " RET=ALL", " ENVID=bad+4", " ORCPT=rfc822", "SIZE=1"]
MAIL_PARAMS = st.sampled_from(["", "", "", " SIZE=100", " BODY=8BITMIME", " BODY=7BIT",
                               " SMTPUTF8", " RET=HDRS", " RET=FULL", " ENVID=abc+2B1",
                               " AUTH=<>"]) | st.sampled_from(BAD_PARAMS)
RCPT_PARAMS = st.sampled_from(["", "", "", " NOTIFY=SUCCESS,FAILURE", " NOTIFY=NEVER",
                               " ORCPT=rfc822;x+40partner.example",
                               " NOTIFY=DELAY ORCPT=rfc822;a+40b"]) | st.sampled_from(BAD_PARAMS)

# -- data ------------------------------------------------------------------------------

SMUGGLE_ENDS = [b"\n.\n", b"\r.\r", b"\r\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\r", b"\n.\r",
                b"\r.\n", b"\n", b"\r", b"\r\r\n"]
SMUGGLED = (b"MAIL FROM:<ceo@example.org>\r\nRCPT TO:<victim@elsewhere.example>\r\nDATA\r\n"
            b"Subject: smuggled\r\n\r\nsmuggled\r\n")
LINES = [b"Subject: fuzz\r\n", b"\r\n", b"..\r\n", b"...leading dots\r\n", b"body text\r\n",
         b"caf\xc3\xa9 8bit\r\n", b"\xff\xfe raw bytes\r\n", b"x" * 900 + b"\r\n",
         b"Received: from fake\r\n", b"MAIL FROM:<inside@body.example>\r\n"]


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    parts = []
    for _ in range(draw(st.integers(1, 6))):
        if draw(st.integers(0, 2)) == 0:
            # A would-be end of data, then the start of a second transaction;
            # the "X" keeps the next part from completing a real <CRLF>.<CRLF>.
            parts.append(draw(st.sampled_from(SMUGGLE_ENDS)) + b"X" + SMUGGLED)
        else:
            parts.append(draw(st.sampled_from(LINES)))
    body = b"".join(parts)
    if body and not body.endswith(b"\r\n"):
        body += b"\r\n"
    return body


# -- sessions -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Step:
    kind: str          # ehlo | mail | rcpt | data | raw | rset | noop
    line: bytes = b""
    path: Path_ | None = None
    body: bytes = b""


garbage = st.binary(max_size=60).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
helo_names = st.sampled_from(["client.test"] * 24 + ["[127.0.0.1]", "x_y.example", "bad name",
                              "bad\rname", "bad\x00name", "", "a" * 300, "ünïcode.example"])


@st.composite
def sessions(draw: st.DrawFn) -> list[Step]:
    steps = [Step("ehlo", f"{draw(st.sampled_from(['EHLO', 'EHLO', 'HELO', 'ehlo']))} "
                          f"{draw(helo_names)}".rstrip().encode())]
    for n in range(draw(st.integers(1, 3))):
        if n and draw(st.integers(0, 3)):
            steps.append(Step("rset", b"RSET"))
        mail_path = draw(paths() | st.just(Path_("<>", "", True)))
        steps.append(Step("mail", f"MAIL FROM:{mail_path.text}{draw(MAIL_PARAMS)}"
                                  .encode("utf-8", "surrogateescape"), mail_path))
        for _ in range(draw(st.integers(1, 3))):
            rcpt_path = draw(paths())
            steps.append(Step("rcpt", f"RCPT TO:{rcpt_path.text}{draw(RCPT_PARAMS)}"
                                      .encode("utf-8", "surrogateescape"), rcpt_path))
        choice = draw(st.integers(0, 5))
        if choice <= 3:
            steps.append(Step("data", body=draw(bodies())))
        elif choice == 4:
            steps.append(Step("raw", draw(garbage)))
            steps.append(Step("rset", b"RSET"))
        else:
            steps.append(Step("rset", b"RSET"))
    return steps


# -- the run --------------------------------------------------------------------------------

_BARE = re.compile(rb"\r(?!\n)|(?<!\r)\n")
_REPLY = re.compile(r"[2-5]\d\d")


@dataclass
class Tally:
    cases: int = 0
    commands: int = 0
    replies: Counter[str] = field(default_factory=Counter)
    by_command: Counter[str] = field(default_factory=Counter)
    accepted_messages: int = 0
    invalid_paths_sent: int = 0
    invalid_paths_accepted: int = 0
    outside_recipients_accepted: int = 0
    bare_data_sent: int = 0
    bare_data_accepted: int = 0
    hung: int = 0
    crashes: int = 0
    seconds: float = 0.0


def _outside(box: str) -> bool:
    domain = box.rpartition("@")[2].lower()
    return domain not in INSIDE


def run_session(port: int, steps: list[Step], tally: Tally) -> None:
    try:
        client = RawClient(port, timeout=WAIT)
    except OSError as exc:
        tally.crashes += 1
        raise AssertionError(f"relay does not accept connections: {exc}") from None
    with client:
        rcpt_ok = 0
        for step in steps:
            tally.commands += 1
            try:
                if step.kind == "data":
                    code, text = client.cmd(b"DATA")
                    tally.by_command[f"data {code}"] += 1
                    if code != 354:
                        continue
                    body = step.body
                    bare = _BARE.search(body) is not None
                    tally.bare_data_sent += bare
                    client.send(body + b".\r\n")
                    code, text = client.reply()
                    tally.replies[str(code)] += 1
                    if code == 250:
                        tally.accepted_messages += 1
                        assert not bare, f"data with a bare CR/LF accepted: {body!r}"
                        tally.bare_data_accepted += bare
                    # The next reply must be NOOP's own: nothing smuggled ran.
                    noop = client.cmd(b"NOOP")
                    assert noop == (250, "OK"), f"after DATA, NOOP got {noop}"
                    rcpt_ok = 0
                    continue
                code, text = client.cmd(step.line)
            except TimeoutError:
                tally.hung += 1
                raise AssertionError(f"no reply to {step.line!r} within {WAIT}s") from None
            except ConnectionError:
                # The relay may close a session (e.g. too many bad commands): only
                # a crash of the process itself counts, checked at the end.
                return
            assert _REPLY.fullmatch(str(code)), (step, code, text)
            tally.replies[str(code)] += 1
            tally.by_command[f"{step.kind} {code}"] += 1
            if code == 451 and "try again later" in text:
                tally.crashes += 1
                raise AssertionError(f"error in a hook on {step.line!r}: {code} {text}")
            if step.kind in ("mail", "rcpt") and step.path is not None:
                accepted = 200 <= code < 300
                if not step.path.valid:
                    tally.invalid_paths_sent += 1
                    if accepted:
                        tally.invalid_paths_accepted += 1
                        raise AssertionError(f"invalid path accepted: {step.line!r}")
                if step.kind == "rcpt" and accepted:
                    rcpt_ok += 1
                    if _outside(step.path.mailbox):
                        tally.outside_recipients_accepted += 1
                        raise AssertionError(f"recipient outside the address spaces "
                                             f"accepted: {step.line!r}")
        try:
            client.cmd(b"QUIT")
        except (ConnectionError, TimeoutError):
            pass


@dataclass
class FuzzFront:
    env: RelayEnv
    hops: dict[str, Sink]
    proc: ServeProcess
    tally: Tally = field(default_factory=Tally)


@pytest.fixture
def fuzz_front(relay_env: RelayEnv, sinks: Callable[..., Sink], contoso: Hub,
               serve: Callable[[], ServeProcess]) -> FuzzFront:
    hops = contoso_relay(relay_env, sinks, delivery_workers=4)
    return FuzzFront(relay_env, hops, serve())


def _drain(env: RelayEnv, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while list(env.queue.glob("*.msg")) and time.monotonic() < deadline:
        time.sleep(0.2)


def _rcpt_paths(sink: Sink) -> list[str]:
    """The ``<path>`` of each RCPT a hop received (its parameters hold no '>')."""
    found = []
    for line in sink.handler.lines:
        if line.startswith("RCPT "):
            arg = line[len("RCPT TO:"):]
            found.append(arg[:arg.rindex(">") + 1])
    return found


def test_fuzz_the_smtp_front(fuzz_front: FuzzFront) -> None:
    front, tally = fuzz_front, fuzz_front.tally
    started = time.monotonic()

    @settings(max_examples=CASES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(steps=sessions())
    def one(steps: list[Step]) -> None:
        tally.cases += 1
        run_session(front.env.port, steps, tally)

    one()
    tally.seconds = round(time.monotonic() - started, 1)

    # The relay is alive and answers a plain session.
    assert front.proc.alive
    with RawClient(front.env.port) as client:
        assert client.cmd("EHLO client.test")[0] == 250
        assert client.cmd("NOOP")[0] == 250
    assert "Traceback" not in front.proc.stderr

    # It queued exactly what it said 250 to: no smuggled second message.
    received = {e["message_id"] for e in front.env.events("received")}
    assert len(received) == tally.accepted_messages

    # Every message a hop got went inside that hop's address space.
    _drain(front.env, timeout=60)
    for name, suffix in (("internal", "@example.org>"), ("internet", "@partner.example>"),
                         ("msgw", "@msgw.example.net>")):
        for rcpt in _rcpt_paths(front.hops[name]):
            assert rcpt.lower().endswith(suffix.lower()), (name, rcpt)
            assert not _outside(rcpt[1:-1]) or name == "msgw", (name, rcpt)

    assert tally.cases >= CASES * 0.9  # Hypothesis ran (about) the budget it was given
    assert tally.invalid_paths_sent > 0 and tally.bare_data_sent > 0
    if REPORT:
        figures = {**tally.__dict__, "replies": dict(sorted(tally.replies.items())),
                   "by_command": dict(sorted(tally.by_command.items())),
                   "hop_messages": {k: len(v.messages) for k, v in front.hops.items()},
                   "relay_alive_at_end": front.proc.alive}
        Path(REPORT).write_text(json.dumps(figures, indent=2) + "\n")
