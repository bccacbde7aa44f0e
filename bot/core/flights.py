"""One look-up per key at a time, shared by everyone who asks meanwhile ("single flight").

A cache filled behind a lock held across a network or database round trip turns concurrent
questions into a queue: ten people asking at once wait for ten users.info calls one after
another. Here each key has at most one look-up in flight; callers asking for the same key
meanwhile await that one, and callers asking for other keys never wait for it. Runs on the
event loop (no thread may call it).

A caller that is cancelled does not cancel the shared look-up (others may be waiting for it);
the look-up's own failure reaches every caller waiting for it, and the next caller tries again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Flights(Generic[K, V]):
    def __init__(self) -> None:
        self._flying: dict[K, asyncio.Task[V]] = {}

    async def run(self, key: K, fetch: Callable[[], Coroutine[Any, Any, V]]) -> V:
        """The result of ``fetch()`` for ``key``: this caller's own call, or the one already
        in flight for ``key``."""
        task = self._flying.get(key)
        if task is None:
            task = asyncio.create_task(fetch())
            self._flying[key] = task
            task.add_done_callback(lambda done: self._landed(key, done))
        return await asyncio.shield(task)

    def forget(self, key: K | None = None) -> None:
        """Callers from now on start a look-up of their own (for ``key``, or for every key):
        what is in flight may predate a change. Those already waiting get its answer."""
        if key is None:
            self._flying.clear()
        else:
            self._flying.pop(key, None)

    def _landed(self, key: K, task: asyncio.Task[V]) -> None:
        if self._flying.get(key) is task:
            del self._flying[key]
        if not task.cancelled():
            task.exception()  # observed here even when every caller was cancelled meanwhile

    def __len__(self) -> int:
        return len(self._flying)
