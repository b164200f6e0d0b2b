"""Fixtures for the relay: real aiosmtpd next hops, a real slapd hub, config files.

The hub is the session slapd with one fresh subtree per test (the ``base``
fixture), holding the recipients the tests address.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dirsync.testing.slapd import SlapdServer

from .helpers import CAROL_X400, TED_X400, Hub, RelayEnv, ServeProcess, Sink


@pytest.fixture
def sinks() -> Iterator[Callable[..., Sink]]:
    made: list[Sink] = []

    def make(*, start: bool = True, **kwargs: Any) -> Sink:
        sink = Sink(**kwargs)
        made.append(sink)
        return sink.start() if start else sink

    yield make
    for sink in made:
        sink.stop()


@pytest.fixture
def hub(slapd: SlapdServer, base: str) -> Hub:
    return Hub(slapd, base)


@pytest.fixture
def contoso(hub: Hub) -> Hub:
    """The recipients most tests address."""
    hub.add("Ted Bremer", mail="ted@example.org", proxies=(
        "SMTP:ted@example.org", "smtp:t.bremer@example.org", f"X400:{TED_X400}",
        "MS:EXCHANGE/HUB/TEDB", "notes:Ted@Exchange"))
    hub.add("Bob Jones", mail="bob@example.org", proxies=("SMTP:bob@example.org",),
            target="MS:MICROSOFT/PO2/BOB")
    hub.add("Carol Smith", mail="carol@example.org", proxies=("SMTP:carol@example.org",),
            target=f"X400:{CAROL_X400}")
    hub.add("Dave Notes", mail="dave@example.org", target="NOTES:Dave@Acme")
    hub.add("Erin Broken", mail="erin@example.org", target="X400:this is no O/R address")
    return hub


@pytest.fixture
def relay_env(tmp_path: Path, slapd: SlapdServer, base: str,
              sinks: Callable[..., Sink]) -> Iterator[RelayEnv]:
    # Depends on ``sinks`` so that the relay stops before its next hops do:
    # a hop stopped under an open relay connection leaves a transport unclosed.
    env = RelayEnv(tmp_path, slapd, base)
    yield env
    env.stop()


@pytest.fixture
def serve(relay_env: RelayEnv) -> Iterator[Callable[[], ServeProcess]]:
    """Start ``dirsync relay serve`` on the test's config, as a real process."""
    started: list[ServeProcess] = []

    def start() -> ServeProcess:
        relay_env.write()
        proc = ServeProcess(relay_env.config_path, relay_env.port).start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.proc is not None:
            proc.kill()
