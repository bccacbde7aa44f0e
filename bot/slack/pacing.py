"""Workspace-wide pacing of Slack writes.

Slack rate-limits chat.update (tier 3, ~50 a minute) and chat.appendStream (tier 4, ~100 a
minute) per workspace, for all messages together. Every answer streaming in a workspace
takes its writes from one shared token bucket per method family, so with many answers in
flight each message simply updates less often (and carries more text per update). A 429
pauses the whole bucket for its Retry-After. Runs on the event loop only.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    per_minute: float
    burst: float = 5.0
    tokens: float = field(init=False)
    updated: float = field(default_factory=time.monotonic)
    paused_until: float = 0.0

    def __post_init__(self) -> None:
        self.tokens = self.burst
        self._urgent = 0

    def _refill(self, now: float) -> None:
        rate = self.per_minute / 60.0
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * rate)
        self.updated = now

    async def acquire(self, *, urgent: bool = False) -> None:
        """Wait for a write slot. Urgent writes (an answer's final message) go before
        intermediate updates, which only make a message grow sooner."""
        if urgent:
            self._urgent += 1
        try:
            while True:
                now = time.monotonic()
                if now < self.paused_until:
                    await asyncio.sleep(self.paused_until - now)
                    continue
                self._refill(now)
                if self.tokens >= 1 and (urgent or self._urgent == 0):
                    self.tokens -= 1
                    return
                wait = (1 - self.tokens) / (self.per_minute / 60.0) if self.tokens < 1 else 0.01
                await asyncio.sleep(max(wait, 0.001))
        finally:
            if urgent:
                self._urgent -= 1

    def pause(self, seconds: float) -> None:
        """After a 429: nobody in this workspace writes with this method until it passes."""
        self.paused_until = max(self.paused_until, time.monotonic() + max(seconds, 0.0))
        self.tokens = 0


class Pacer:
    """Buckets per (workspace, method family)."""

    def __init__(self, update_per_minute: float, append_per_minute: float) -> None:
        self.rates = {"update": update_per_minute, "append": append_per_minute}
        self.buckets: dict[tuple[str, str], TokenBucket] = {}

    def bucket(self, team: str, family: str) -> TokenBucket:
        key = (team, family)
        if key not in self.buckets:
            self.buckets[key] = TokenBucket(self.rates[family])
        return self.buckets[key]
