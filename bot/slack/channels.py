"""Whether a channel has guest or external readers, cached per instance.

Grants to a channel count only while none of its readers is a guest, so a guest who joins
must close them at once in every instance: a join or leave reaching any instance bumps a
shared change counter (Redis when REDIS_URL is set, as for identity changes), and every
instance drops its cached answers when it sees the counter move. Runs on the event loop.
"""

from __future__ import annotations

import logging

from cachetools import TTLCache

from bot.core.versions import LocalVersion, RedisVersion

log = logging.getLogger("concierge.slack.channels")


class ChannelGuests:
    def __init__(
        self, version: LocalVersion | RedisVersion | None = None, *, ttl_s: float = 300.0
    ) -> None:
        self.version = version or LocalVersion()
        self._seen = 0
        self._cache: TTLCache[str, bool] = TTLCache(maxsize=10_000, ttl=ttl_s)

    async def get(self, channel: str) -> bool | None:
        """The cached answer, unless some instance saw the membership change since."""
        await self._check_version()
        return self._cache.get(channel)

    def put(self, channel: str, has_guests: bool) -> None:
        self._cache[channel] = has_guests

    def drop(self, channel: str) -> None:
        """Forget this instance's answer for ``channel`` (synchronous: nothing can run
        between the event and this)."""
        self._cache.pop(channel, None)

    async def changed(self, channel: str, *, guest_joined: bool = False) -> None:
        """Someone joined or left ``channel``: every instance asks Slack again; a guest's
        join marks the channel as having guests here at once."""
        self.drop(channel)
        try:
            await self.version.bump()
        except Exception as exc:  # Redis down: this instance is still right; others age out
            log.warning("could not share a channel change (%s)", exc.__class__.__name__)
        await self._check_version()
        if guest_joined:
            self._cache[channel] = True

    async def forget_all(self) -> None:
        """A new person in the workspace (team_join): every channel is asked again."""
        self._cache.clear()
        try:
            await self.version.bump()
        except Exception as exc:
            log.warning("could not share a channel change (%s)", exc.__class__.__name__)

    async def _check_version(self) -> None:
        try:
            current = await self.version.get()
        except Exception:
            return
        if current != self._seen:
            self._cache.clear()
            self._seen = current
