"""Identity in Slack: a user id becomes an Asker through users.info and user groups.

Answers are cached with a TTL behind an asyncio lock (this runs on the event loop only).
A person's groups are their Slack user groups' handles plus the groups the config lists for
their email. Restricted and ultra-restricted accounts, and users of another workspace
(Slack Connect), are guests.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from cachetools import TTLCache
from slack_sdk.web.async_client import AsyncWebClient

from bot.config import WorkspaceConfig
from bot.core.identity import UnknownPerson
from bot.core.types import Asker
from bot.core.versions import LocalVersion, RedisVersion

log = logging.getLogger("concierge.slack.identity")


class SlackIdentityResolver:
    def __init__(
        self,
        client: AsyncWebClient,
        config: WorkspaceConfig,
        *,
        team_id: str | None = None,
        ttl_s: float = 300.0,
        version: LocalVersion | RedisVersion | None = None,
    ) -> None:
        self.client = client
        # Bumped by whichever instance receives user_change / subteam_members_changed; every
        # instance drops its cache when it sees the count move.
        self.version = version or LocalVersion()
        self._seen = 0
        self.config = config
        self.team_id = team_id
        self._people = {p.email: p for p in config.people}
        self._users: TTLCache[str, Asker] = TTLCache(maxsize=50_000, ttl=ttl_s)
        self._groups: TTLCache[str, dict[str, frozenset[str]]] = TTLCache(maxsize=1, ttl=ttl_s)
        self._guests: TTLCache[str, frozenset[str]] = TTLCache(maxsize=1, ttl=ttl_s)
        self._lock = asyncio.Lock()

    async def guest_ids(self) -> frozenset[str]:
        """Ids of the workspace's guests (restricted accounts) and external people, from
        users.list, cached with the rest and dropped on user_change."""
        await self._check_version()
        cached = self._guests.get("all")
        if cached is not None:
            return cached
        found: set[str] = set()
        cursor = None
        for _ in range(200):  # up to 200 pages of 1,000 people
            page = await self.client.users_list(limit=1000, cursor=cursor)
            for user in page.get("members") or []:
                external = self.team_id and user.get("team_id") and user["team_id"] != self.team_id
                if (
                    user.get("is_restricted")
                    or user.get("is_ultra_restricted")
                    or user.get("is_stranger")
                    or external
                ):
                    found.add(str(user.get("id")))
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                break
        result = frozenset(found)
        self._guests["all"] = result
        return result

    def _forget(self, user_id: str | None = None) -> None:
        if user_id is None:
            self._users.clear()
        else:
            self._users.pop(user_id, None)
        self._groups.clear()
        self._guests.clear()

    async def invalidate(self, user_id: str | None = None) -> None:
        """Forget cached answers (on user_change / subteam_members_changed), here at once and
        in the other instances from their next question on."""
        self._forget(user_id)
        try:
            await self.version.bump()
        except Exception as exc:  # Redis down: this instance is still right; others age out
            log.warning("could not share an identity change (%s)", exc.__class__.__name__)

    async def _check_version(self) -> None:
        try:
            current = await self.version.get()
        except Exception:
            return
        if current != self._seen:
            self._forget()
            self._seen = current

    async def _group_map(self) -> dict[str, frozenset[str]]:
        cached = self._groups.get("all")
        if cached is not None:
            return cached
        members: dict[str, set[str]] = {}
        try:
            resp = await self.client.usergroups_list(include_users=True)
            group: dict[str, Any]
            for group in resp.get("usergroups", []):
                handle = str(group.get("handle") or "").lower()
                uid: str
                for uid in group.get("users", []) or []:
                    members.setdefault(uid, set()).add(handle)
        except Exception as exc:  # missing scope or Slack unreachable: config groups still count
            log.warning(
                "usergroups.list failed (%s); using config groups only", exc.__class__.__name__
            )
        result = {uid: frozenset(h) for uid, h in members.items()}
        self._groups["all"] = result
        return result

    async def resolve(self, ref: str) -> Asker:
        await self._check_version()
        async with self._lock:
            cached = self._users.get(ref)
            if cached is not None:
                return cached
            try:
                resp = await self.client.users_info(user=ref)
            except Exception as exc:
                log.warning("users.info failed for %s: %s", ref, exc.__class__.__name__)
                raise UnknownPerson("I couldn't look you up in Slack just now.") from None
            user: dict[str, Any] = resp.get("user") or {}
            profile = user.get("profile") or {}
            email = str(profile.get("email") or "").strip().lower()
            if not email:
                raise UnknownPerson(
                    "I can't see your email address in Slack, so I can't check which sources "
                    "you may read. Ask an admin to check the app's users:read.email scope."
                )
            external = bool(
                user.get("is_stranger")
                or (self.team_id and user.get("team_id") and user.get("team_id") != self.team_id)
            )
            guest = bool(user.get("is_restricted") or user.get("is_ultra_restricted") or external)
            slack_groups = (await self._group_map()).get(ref, frozenset())
            person = self._people.get(email)
            config_groups = frozenset(person.groups) if person else frozenset()
            asker = Asker(
                email=email,
                groups=slack_groups | config_groups,
                guest=guest or bool(person and person.guest),
                name=str(user.get("real_name") or profile.get("real_name") or "") or None,
                ref=ref,
                workspace_admin=bool(not guest and (user.get("is_admin") or user.get("is_owner"))),
            )
            self._users[ref] = asker
            return asker
