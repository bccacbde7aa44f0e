"""What we know of a Slack channel: its name and sharing (``ChannelDirectory``, the one
owner of conversations.info), and whether it has guest or external readers (``ChannelGuests``).

A channel's info is asked of Slack at most once per answer and once per channel at a time
(concurrent questions in one channel share the call), then cached for a few minutes; a failed
call is not cached, so the next question asks again.

Whether a channel has guest or external readers is cached per instance.

Grants to a channel count only while none of its readers is a guest, so a guest who joins
must close them at once in every instance: a join or leave reaching any instance bumps a
shared change counter (Redis when REDIS_URL is set, as for identity changes), and every
instance drops its cached answers when it sees the counter move. Runs on the event loop.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from cachetools import TTLCache

from bot.core.flights import Flights
from bot.core.versions import LocalVersion, RedisVersion

log = logging.getLogger("concierge.slack.channels")


@dataclass(frozen=True)
class Channel:
    id: str
    name: str  # lower case; the id itself when Slack could not say
    shared: bool  # shared with another organisation (Slack Connect) or another workspace
    known: bool  # False: conversations.info failed (no channels:read, or Slack unreachable)


class ChannelDirectory:
    """conversations.info, asked once per channel and cached (runs on the event loop)."""

    def __init__(self, client: Any, *, ttl_s: float = 300.0) -> None:
        self.client = client
        self._cache: TTLCache[str, Channel] = TTLCache(maxsize=10_000, ttl=ttl_s)
        self._flights: Flights[str, Channel] = Flights()

    async def info(self, channel: str) -> Channel:
        cached = self._cache.get(channel)
        if cached is not None:
            return cached
        return await self._flights.run(channel, lambda: self._ask(channel))

    def forget(self, channel: str) -> None:
        """Ask Slack again next time (someone joined or left: it may have become shared)."""
        self._cache.pop(channel, None)
        self._flights.forget(channel)

    async def name(self, channel: str) -> str:
        return (await self.info(channel)).name

    async def _ask(self, channel: str) -> Channel:
        try:
            info = (await self.client.conversations_info(channel=channel)).get("channel") or {}
        except Exception as exc:  # no channels:read, or Slack unreachable: the id still works
            log.info("conversations.info failed for %s (%s)", channel, exc.__class__.__name__)
            return Channel(channel, channel.lower(), shared=False, known=False)
        found = Channel(
            channel,
            str(info.get("name") or channel).lower(),
            shared=bool(info.get("is_ext_shared") or info.get("is_shared")),
            known=True,
        )
        self._cache[channel] = found
        return found


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
