"""Wiring: one :class:`Relay` holds the SMTP front, the queue, the scheduler and the pickup.

``start()`` fails fast (STYLE.md item 9): it opens the queue folder, binds
to the hub, loads TLS material and the users file, and binds the listening
socket, raising a :class:`~dirsync.errors.DirsyncError` for the first thing
that is wrong; only then do deliveries start, beginning with whatever a
previous run left in the queue. ``stop()`` stops accepting, lets running
attempts finish and closes everything.

:class:`RelayThread` runs a relay in a background thread with its own event
loop, for embedding and for tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Self

from dirsync.addresses.x400 import ORAddress
from dirsync.relay.auth import Authenticator, load_users
from dirsync.relay.config import RelayConfig, SmtpHopConfig
from dirsync.relay.delivery import DeliveryAgent, Hop
from dirsync.relay.errors import RelayStartError
from dirsync.relay.gateway import X400Hop
from dirsync.relay.handler import RelayHandler
from dirsync.relay.hub import HubLookup, LdapHub
from dirsync.relay.pickup import Pickup
from dirsync.relay.protocol import DsnSMTP
from dirsync.relay.queue import Queue
from dirsync.relay.routing import Router
from dirsync.relay.scheduler import Scheduler
from dirsync.relay.smtp_hop import SmtpHop
from dirsync.relay.tracking import Tracker
from dirsync.relay.translate import Translator

log = logging.getLogger("dirsync.relay")


def build_hops(config: RelayConfig) -> dict[str, Hop]:
    """The next hops of a config, ready to deliver."""
    hops: dict[str, Hop] = {}
    for name, hop in config.hops.items():
        if isinstance(hop, SmtpHopConfig):
            hops[name] = SmtpHop(hop, helo=config.hostname, imcea_domain=config.imcea_domain)
        else:
            hops[name] = X400Hop(name, hop.path, mta=config.x400.mta,
                                 global_domain=config.x400.global_domain or ORAddress(),
                                 tables=config.x400.tables())
    return hops


def build_translator(config: RelayConfig, hub: HubLookup) -> Translator:
    return Translator(hub, Router(config.routes), domains=config.domains,
                      imcea_domain=config.imcea_domain, tables=config.x400.tables())


class Relay:
    """The relay service."""

    def __init__(self, config: RelayConfig, *, hub: HubLookup | None = None) -> None:
        self.config = config
        self.hub: HubLookup = hub if hub is not None else LdapHub(config.hub)
        self.translator = build_translator(config, self.hub)
        self.router = self.translator.router
        self.hops = build_hops(config)
        self.queue = Queue(config.queue)
        self.scheduler = Scheduler(self._attempt, config.delivery_workers)
        self.tracker: Tracker | None = None
        self.agent: DeliveryAgent | None = None
        self.pickup: Pickup | None = None
        self._io = ThreadPoolExecutor(max_workers=4, thread_name_prefix="relay-io")
        self._server: asyncio.AbstractServer | None = None
        self._sessions: weakref.WeakSet[DsnSMTP] = weakref.WeakSet()
        self._pickup_task: asyncio.Task[None] | None = None
        self._started = False

    @property
    def address(self) -> tuple[str, int]:
        return self.config.listen_host, self.config.listen_port

    def _attempt(self, queue_id: str) -> float | None:
        assert self.agent is not None
        return self.agent.attempt(queue_id)

    def _tls_context(self) -> ssl.SSLContext | None:
        tls = self.config.tls
        if tls is None:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            ctx.load_cert_chain(str(tls.cert), str(tls.key))
        except (OSError, ssl.SSLError) as exc:
            raise RelayStartError(f"cannot load TLS certificate {tls.cert}: {exc}") from None
        return ctx

    async def start(self) -> None:
        """Open everything, or raise for the first thing that is wrong."""
        cfg = self.config
        loop = asyncio.get_running_loop()
        waiting = self.queue.open()
        folders = [h.folder for h in self.hops.values() if isinstance(h, X400Hop)]
        if cfg.x400.pickup is not None:
            folders.append(cfg.x400.pickup)
        for folder in folders:
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise RelayStartError(f"cannot create {folder}: {exc.strerror}") from None
        if isinstance(self.hub, LdapHub):
            await loop.run_in_executor(self._io, self.hub.connect)
        tls_context = self._tls_context()
        authenticator = Authenticator(load_users(cfg.auth.users_file)) if cfg.auth else None
        self.tracker = Tracker(cfg.tracking_log)
        self.agent = DeliveryAgent(cfg, self.queue, self.translator, self.router, self.hops,
                                   self.tracker, self.scheduler.submit)
        handler = RelayHandler(translator=self.translator, queue=self.queue,
                               tracker=self.tracker, hostname=cfg.hostname,
                               max_recipients=cfg.max_recipients, executor=self._io,
                               submit=self.scheduler.submit)

        def factory() -> DsnSMTP:
            kwargs: dict[str, Any] = {}
            if authenticator is not None:
                kwargs.update(authenticator=authenticator, auth_required=cfg.auth.required
                              if cfg.auth else False)
            else:
                # No users file: offer no AUTH mechanism at all.
                kwargs.update(auth_exclude_mechanism=["LOGIN", "PLAIN"])
            session = DsnSMTP(
                handler, postmaster=cfg.postmaster, hostname=cfg.hostname, ident="dirsync relay",
                data_size_limit=cfg.max_message_size, enable_SMTPUTF8=True,
                tls_context=tls_context,
                require_starttls=bool(cfg.tls and cfg.tls.require_starttls),
                timeout=cfg.session_timeout, auth_require_tls=True, loop=loop, **kwargs)
            self._sessions.add(session)
            return session

        try:
            self._server = await loop.create_server(factory, host=cfg.listen_host,
                                                    port=cfg.listen_port)
        except OSError as exc:
            raise RelayStartError(f"cannot listen on {cfg.listen_host}:{cfg.listen_port}: "
                                  f"{exc.strerror or exc}") from None
        await self.scheduler.start()
        for msg in waiting:
            self.scheduler.submit(msg.id, msg.next_attempt)
        if cfg.x400.pickup is not None:
            self.pickup = Pickup(cfg.x400.pickup, queue=self.queue, translator=self.translator,
                                 tracker=self.tracker, hostname=cfg.hostname,
                                 submit=self.scheduler.submit)
            self._pickup_task = loop.create_task(self._pickup_loop(), name="relay-pickup")
        self._started = True
        log.info("relay listening on %s:%s with %d queued messages", cfg.listen_host,
                 cfg.listen_port, len(waiting))

    async def _pickup_loop(self) -> None:
        assert self.pickup is not None
        loop = asyncio.get_running_loop()
        while True:
            try:
                await loop.run_in_executor(self._io, self.pickup.scan)
            except Exception:
                log.exception("pickup scan of %s failed", self.config.x400.pickup)
            await asyncio.sleep(self.config.x400.pickup_interval)

    async def stop(self) -> None:
        """Stop accepting, let running attempts finish, close everything."""
        if self._server is not None:
            self._server.close()
            for session in list(self._sessions):
                if session.transport is not None:
                    session.transport.close()
                if session._handler_coroutine is not None:
                    session._handler_coroutine.cancel()
            await self._server.wait_closed()
            self._server = None
        if self._pickup_task is not None:
            self._pickup_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pickup_task
            self._pickup_task = None
        await self.scheduler.stop()
        self._io.shutdown(wait=True)
        if isinstance(self.hub, LdapHub):
            self.hub.close()
        if self.tracker is not None:
            self.tracker.close()
        self._started = False

    async def wait_idle(self) -> None:
        """Wait until the queue has nothing scheduled (tests, benchmarks)."""
        await self.scheduler.wait_idle()

    def run(self) -> None:
        """Serve until SIGTERM or SIGINT (``dirsync relay serve``)."""
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        try:
            await stop.wait()
        finally:
            await self.stop()


class RelayThread:
    """A :class:`Relay` in a background thread with its own event loop."""

    def __init__(self, config: RelayConfig, *, hub: HubLookup | None = None) -> None:
        self.relay = Relay(config, hub=hub)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stop: asyncio.Event | None = None

    def start(self, timeout: float = 20.0) -> RelayThread:
        self._thread = threading.Thread(target=self._run, name="relay", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RelayStartError("the relay did not start in time")
        if self._error is not None:
            self._thread.join()
            raise self._error
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self.loop = loop
        asyncio.set_event_loop(loop)
        try:
            self._stop = asyncio.Event()
            try:
                loop.run_until_complete(self.relay.start())
            except BaseException as exc:  # noqa: BLE001 - handed to the starting thread
                self._error = exc
                try:
                    loop.run_until_complete(self.relay.stop())
                except Exception:
                    log.exception("cleaning up after a failed start")
                return
            finally:
                self._ready.set()
            loop.run_until_complete(self._stop.wait())
            loop.run_until_complete(self.relay.stop())
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
            asyncio.set_event_loop(None)
            loop.close()

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Block until nothing is scheduled (every message delivered or failed)."""
        assert self.loop is not None
        future = asyncio.run_coroutine_threadsafe(self.relay.wait_idle(), self.loop)
        future.result(timeout)

    def stop(self) -> None:
        if self.loop is not None and self._stop is not None and self._thread is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
            self._thread.join()
            self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
