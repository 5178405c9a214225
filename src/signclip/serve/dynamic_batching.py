"""Dynamic batching: requests from many clients are queued and run through the model together.

A worker thread takes up to ``max_batch`` items, waiting at most ``max_wait_ms`` after the first one
for more, calls ``fn(items) -> results`` once, and resolves each item's future. The queue is bounded:
when it is full, :meth:`DynamicBatcher.submit` raises :class:`QueueFull` (the server answers 503).
Correctness relies on ``fn`` being padding-correct (signclip's encoders are: a pose or text embedded
in a batch equals the same input embedded alone).
"""
from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any


class QueueFull(RuntimeError):
    """The batcher's queue is full; try again later."""


class DynamicBatcher:
    """Collect items into batches of at most ``max_batch`` within ``max_wait_ms``; one worker thread."""

    def __init__(self, fn: Callable[[list[Any]], Sequence[Any]], max_batch: int = 32, max_wait_ms: float = 5.0,
                 max_queue: int = 1024, name: str = "batcher"):
        self.fn, self.max_batch, self.max_wait = fn, max(1, int(max_batch)), max(0.0, max_wait_ms) / 1000
        self.queue: queue.Queue[tuple[Any, Future]] = queue.Queue(maxsize=max_queue)
        self.batches = 0
        self.items = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, items: Sequence[Any]) -> list[Future]:
        """Queue items; one future per item. Raises :class:`QueueFull` without queueing any if full."""
        if self.queue.qsize() + len(items) > self.queue.maxsize:
            raise QueueFull(f"server busy: {self.queue.qsize()} items queued, {len(items)} more would pass the "
                            f"limit of {self.queue.maxsize}; try again later")
        futures = []
        for item in items:
            f: Future = Future()
            try:
                self.queue.put_nowait((item, f))
            except queue.Full:
                raise QueueFull(f"server busy: queue limit {self.queue.maxsize} reached") from None
            futures.append(f)
        return futures

    async def run(self, items: Sequence[Any]) -> list[Any]:
        """Submit and await all results (from an asyncio handler)."""
        futures = self.submit(items)
        return list(await asyncio.gather(*(asyncio.wrap_future(f) for f in futures)))

    def __call__(self, items: Sequence[Any]) -> list[Any]:
        """Submit and wait (from a thread)."""
        return [f.result() for f in self.submit(items)]

    def _take(self) -> list[tuple[Any, Future]]:
        try:
            first = self.queue.get(timeout=0.1)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.perf_counter() + self.max_wait
        while len(batch) < self.max_batch:
            remaining = deadline - time.perf_counter()
            try:
                batch.append(self.queue.get(timeout=remaining) if remaining > 0 else self.queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _run(self) -> None:
        while not self._stop.is_set():
            batch = self._take()
            if not batch:
                continue
            batch = [(item, f) for item, f in batch if f.set_running_or_notify_cancel()]
            if not batch:
                continue
            self.batches += 1  # counted before any caller has its answer (and may read the counts)
            self.items += len(batch)
            try:
                results = self.fn([item for item, _ in batch])
                for (_, f), r in zip(batch, results):
                    f.set_result(r)
            except BaseException as e:  # the whole batch fails; the worker keeps running
                for _, f in batch:
                    if not f.done():
                        f.set_exception(e)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
