"""A memory budget for the requests in flight: their bodies and what parsing and preprocessing make of them.

Each request reserves its share before its body is read (from ``Content-Length``, or chunk by chunk without
one) and keeps it until it is answered; a request whose share is not free waits, and gets 503 when it has
not come by its deadline. So many large uploads at once queue instead of multiplying the server's memory.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

# bytes a request may hold per body byte while it is parsed: a JSON number of 4 characters ("1e-3")
# becomes a 24-byte Python float and an 8-byte list entry (8x); a .pose upload about 3x (body, file, arrays)
BYTES_PER_BODY_BYTE = 8


class BudgetExhausted(RuntimeError):
    """The memory budget had no room for a request within its deadline (the server answers 503)."""


class MemoryBudget:
    """``capacity`` bytes shared by the requests in flight; one event loop (the server's)."""

    def __init__(self, capacity: int):
        self.capacity = int(capacity)
        self.used = 0
        self._waiters: list[asyncio.Future] = []

    @asynccontextmanager
    async def reservation(self) -> AsyncIterator[Reservation]:
        """A request's share, empty at first (:meth:`Reservation.grow`) and given back at the end of the block."""
        held = Reservation(self)
        try:
            yield held
        finally:
            self._release(held.size)

    async def _acquire(self, size: int, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        while self.used + size > self.capacity:
            waiter = loop.create_future()
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                raise BudgetExhausted(f"server busy: {self.used / 2**20:.0f} MiB of requests in flight (memory "
                                      f"budget {self.capacity / 2**20:.0f} MiB); try again later") from None
            finally:
                self._waiters.remove(waiter)
        self.used += size

    def _release(self, size: int) -> None:
        self.used -= size
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)


class Reservation:
    """The bytes one request holds of a :class:`MemoryBudget` (never more than the whole budget, so a request
    as large as the budget allows runs alone)."""

    def __init__(self, budget: MemoryBudget):
        self.budget, self.size = budget, 0

    async def grow(self, body_bytes: int, deadline: float) -> None:
        """Hold enough for ``body_bytes`` more of body, waiting until ``deadline`` (event-loop time) at most."""
        more = min(body_bytes * BYTES_PER_BODY_BYTE, self.budget.capacity - self.size)
        if more > 0:
            await self.budget._acquire(more, deadline)
            self.size += more
