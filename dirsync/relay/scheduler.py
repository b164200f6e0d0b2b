"""When each queued message is attempted next, and by which worker.

A heap of (due time, queue id) in the event loop; a fixed number of worker
tasks take due messages and run the (blocking) attempt in a thread pool, so
slow next hops never stall the SMTP front. One message is never attempted by
two workers at once. Times are wall-clock seconds, because they are stored
in the queue journal and must survive a restart.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger("dirsync.relay.scheduler")

CRASH_RETRY = 60.0  # an attempt that raised is tried again after this long


class Scheduler:
    """Runs ``attempt(queue_id) -> next due time or None`` as messages fall due."""

    def __init__(self, attempt: Callable[[str], float | None], workers: int) -> None:
        self._attempt = attempt
        self._workers = workers
        self._heap: list[tuple[float, int, str]] = []
        self._known: set[str] = set()
        self._seq = itertools.count()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._executor = ThreadPoolExecutor(max_workers=workers,
                                            thread_name_prefix="relay-delivery")
        self._running = 0
        self._idle: asyncio.Event | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._update_idle()
        self._tasks = [self._loop.create_task(self._worker(), name=f"relay-worker-{n}")
                       for n in range(self._workers)]

    @property
    def started(self) -> bool:
        return self._loop is not None

    async def stop(self) -> None:
        if self._loop is None:
            return
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        # Attempts already running finish their SMTP conversation; their
        # outcome is in the journal before the threads end.
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: self._executor.shutdown(wait=True))
        self._loop = None

    def submit(self, queue_id: str, due: float) -> None:
        """Schedule a message; safe to call from any thread."""
        loop = self._loop
        if loop is None:
            # Stopped (or not yet started): the message is in the queue and
            # the next start schedules it from there.
            log.debug("scheduler stopped; %s waits for the next start", queue_id)
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._push(queue_id, due)
        else:
            loop.call_soon_threadsafe(self._push, queue_id, due)

    def _push(self, queue_id: str, due: float) -> None:
        if queue_id in self._known:
            return
        self._known.add(queue_id)
        heapq.heappush(self._heap, (due, next(self._seq), queue_id))
        self._update_idle()
        assert self._wake is not None
        self._wake.set()

    def _update_idle(self) -> None:
        if self._idle is None:
            return
        if self._known:
            self._idle.clear()
        else:
            self._idle.set()

    @property
    def pending(self) -> int:
        """Messages waiting or being attempted."""
        return len(self._known)

    def next_due(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    async def wait_idle(self) -> None:
        """Wait until no message is scheduled (for tests and benchmarks)."""
        assert self._idle is not None
        await self._idle.wait()

    async def _take(self) -> str:
        assert self._wake is not None
        while True:
            now = time.time()
            if self._heap and self._heap[0][0] <= now:
                return heapq.heappop(self._heap)[2]
            timeout = self._heap[0][0] - now if self._heap else None
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            queue_id = await self._take()
            try:
                due = await loop.run_in_executor(self._executor, self._attempt, queue_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("attempt at %s failed; trying again in %ss", queue_id,
                              CRASH_RETRY)
                due = time.time() + CRASH_RETRY
            self._known.discard(queue_id)
            if due is not None:
                self._push(queue_id, due)
            else:
                self._update_idle()
