"""``dirsync relay serve`` as a real process: durability across kill -9, clean shutdown."""

from __future__ import annotations

import signal
import smtplib
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .helpers import WAIT, Hub, RelayEnv, ServeProcess, Sink, contoso_relay, message


def queued(env: RelayEnv) -> list[Path]:
    return list(env.queue.glob("*.msg"))


def test_kill_9_after_250_then_restart_delivers_exactly_once(
        relay_env: RelayEnv, sinks: Callable[..., Sink], contoso: Hub,
        serve: Callable[[], ServeProcess]) -> None:
    hops = contoso_relay(relay_env, sinks, retry_initial="0.5s", retry_max="0.5s")
    hops["internet"].stop()  # the hop is down: the message cannot leave before the kill
    relay = serve()
    refused = relay_env.send("ted@example.org", ["someone@partner.example"], message("durable"))
    assert refused == {}  # the relay said 250 ...
    assert relay.kill() == -signal.SIGKILL  # ... and died at once, without any cleanup
    assert len(queued(relay_env)) == 1

    hops["internet"].start()
    relay = serve()
    got = hops["internet"].wait()
    assert got[0].message["Subject"] == "durable"
    relay_env.wait_event("relayed")
    deadline = time.monotonic() + WAIT
    while queued(relay_env):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(1.2)  # more than two retry intervals: nothing is sent twice
    assert len(hops["internet"].messages) == 1

    # Killed again after delivery: the journal says "relayed", so a restart
    # has nothing to send.
    assert relay.kill() == -signal.SIGKILL
    serve()
    time.sleep(1.2)
    assert len(hops["internet"].messages) == 1
    assert [e["event"] for e in relay_env.events() if e["event"] in ("received", "relayed")] \
        == ["received", "relayed"]


def test_sigterm_stops_cleanly(relay_env: RelayEnv, sinks: Callable[..., Sink], contoso: Hub,
                               serve: Callable[[], ServeProcess]) -> None:
    contoso_relay(relay_env, sinks)
    relay = serve()
    assert relay.kill(signal.SIGTERM) == 0
    with pytest.raises(OSError):
        smtplib.SMTP("127.0.0.1", relay_env.port, timeout=2)


def test_serve_fails_fast_on_a_port_in_use(relay_env: RelayEnv, sinks: Callable[..., Sink],
                                           contoso: Hub) -> None:
    contoso_relay(relay_env, sinks)
    relay_env.write()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", relay_env.port))
        taken.listen()
        done = subprocess.run(
            [sys.executable, "-m", "dirsync", "-c", str(relay_env.config_path), "relay", "serve"],
            capture_output=True, text=True, timeout=WAIT, check=False)
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{relay_env.port}" in done.stderr
