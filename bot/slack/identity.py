"""Identity in Slack: a user id becomes an Asker through users.info and user groups.

Answers are cached with a TTL (this runs on the event loop only). No lock is held across a
Slack call: each user id has at most one users.info in flight, shared by whoever asks for it
meanwhile, and different people are looked up concurrently (bot/core/flights.py).
A person's groups are the groups the config lists for their email plus the config groups
that ``slack_groups`` binds to their Slack user groups (an unbound user group gives nothing).
Restricted and ultra-restricted accounts are guests; accounts of another team or
organisation (Slack Connect) are external guests. Until our own team is known (auth.test),
no account can be placed, so everyone is an external guest with public sources only.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Any

from cachetools import TTLCache
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.config import WorkspaceConfig
from bot.core.flights import Flights
from bot.core.identity import UnknownPerson
from bot.core.types import Asker
from bot.core.versions import LocalVersion, RedisVersion

log = logging.getLogger("concierge.slack.identity")
TEAM_RETRY_FIRST_S = 1.0
TEAM_RETRY_MAX_S = 60.0


@dataclass(frozen=True)
class Placement:
    """Where a Slack account stands relative to our own team."""

    guest: bool  # restricted, ultra-restricted or deleted
    external: bool  # another team or organisation, a stranger, or our team is unknown
    email_verified: bool  # Slack confirmed the email (where it says), and we can place them

    @property
    def full_member(self) -> bool:
        return not self.guest and not self.external and self.email_verified


def place(user: dict[str, Any], team: str | None, enterprise: str | None) -> Placement:
    """The one reading of a Slack user object that decides membership (fail closed: an
    account is external unless its team is ours, and our team must be known)."""
    other_org = False
    their_org = (user.get("enterprise_user") or {}).get("enterprise_id")
    if their_org and their_org != enterprise:
        other_org = True
    external = bool(
        team is None or user.get("is_stranger") or user.get("team_id") != team or other_org
    )
    guest = bool(
        user.get("is_restricted") or user.get("is_ultra_restricted") or user.get("deleted")
    )
    verified = team is not None and user.get("is_email_confirmed") is not False
    return Placement(guest=guest or external, external=external, email_verified=verified)


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
        # Bumped by whichever instance receives user_change / team_join /
        # subteam_members_changed; every instance drops its cache when it sees it move.
        self.version = version or LocalVersion()
        self._seen = 0
        self.config = config
        self.team_id = team_id
        self.enterprise_id: str | None = None
        # Our bot's own ids, from the same auth.test (Bolt's authorize uses them, so that no
        # request's ack waits for an auth.test of its own).
        self.bot_user_id: str | None = None
        self.bot_id: str | None = None
        self._team_retry_at = 0.0
        self._team_backoff = TEAM_RETRY_FIRST_S
        self._team_probing = False
        self._people = {p.email: p for p in config.people}
        self._users: TTLCache[str, Asker] = TTLCache(maxsize=50_000, ttl=ttl_s)
        self._groups: TTLCache[str, dict[str, frozenset[str]]] = TTLCache(maxsize=1, ttl=ttl_s)
        self._guests: TTLCache[str, frozenset[str]] = TTLCache(maxsize=1, ttl=ttl_s)
        self._lookups: Flights[str, Asker] = Flights()
        self._lists: Flights[str, Any] = Flights()
        # Moves whenever cached answers are forgotten: a look-up that started before keeps
        # its answer to itself (it may predate the change) instead of caching it.
        self._generation = 0

    # -- our own team ----------------------------------------------------------------------
    async def team(self) -> str | None:
        """Our own team id, from auth.test. While it is unknown nobody is a full member
        (fail closed), and auth.test is asked again by the next request that needs it, at
        most once per backoff (1 s doubling to 60 s); one probe at a time, nobody waits."""
        if self.team_id:
            return self.team_id
        if self._team_probing or time.monotonic() < self._team_retry_at:
            return None
        self._team_probing = True
        try:
            auth = await self.client.auth_test()
            team = str(auth.get("team_id") or "")
            if not team:
                raise ValueError("auth.test answered without a team_id")
        except Exception as exc:
            log.error(
                "auth.test failed (%s): our own Slack team is unknown, so nobody counts as a "
                "member of it: everyone is treated as an external guest (public sources only, "
                "no admin, owner or reviewer commands) until it succeeds; next try in %.0f s",
                exc.__class__.__name__,
                self._team_backoff,
            )
            self._team_retry_at = time.monotonic() + self._team_backoff
            self._team_backoff = min(self._team_backoff * 2, TEAM_RETRY_MAX_S)
            return None
        finally:
            self._team_probing = False
        self.bot_user_id = str(auth.get("user_id") or "") or None
        self.bot_id = str(auth.get("bot_id") or "") or None
        self.learn_team(team, auth.get("enterprise_id"))
        return team

    def learn_team(self, team: str, enterprise: str | None = None) -> None:
        """Our team is known: members are recognised from now on. What was cached while it
        was unknown (everyone an external guest) is dropped."""
        recovered = self._team_backoff > TEAM_RETRY_FIRST_S
        self.team_id = team
        self.enterprise_id = enterprise or None
        self._team_backoff = TEAM_RETRY_FIRST_S
        self._forget()
        if recovered:
            log.warning("auth.test succeeded: our Slack team is %s; members are recognised", team)

    # -- caches ----------------------------------------------------------------------------
    async def guest_ids(self) -> frozenset[str]:
        """Ids of the workspace's guests (restricted accounts) and external people, from
        users.list, cached with the rest and dropped on user_change and team_join. Not
        cached while our team is unknown (then everyone is external)."""
        await self._check_version()
        cached = self._guests.get("all")
        if cached is not None:
            return cached
        found: frozenset[str] = await self._lists.run("guests", self._list_guests)
        return found

    async def _list_guests(self) -> frozenset[str]:
        team = await self.team()
        generation = self._generation
        found: set[str] = set()
        cursor = None
        for _ in range(200):  # up to 200 pages of 1,000 people
            page = await self.client.users_list(limit=1000, cursor=cursor)
            for user in page.get("members") or []:
                if not isinstance(user, dict):
                    continue
                spot = place(user, team, self.enterprise_id)
                if spot.guest or spot.external:
                    found.add(str(user.get("id")))
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                break
        result = frozenset(found)
        if team is not None and generation == self._generation:
            self._guests["all"] = result
        return result

    def _forget(self, user_id: str | None = None) -> None:
        self._generation += 1
        self._lookups.forget(user_id)
        self._lists.forget()
        if user_id is None:
            self._users.clear()
        else:
            self._users.pop(user_id, None)
        self._groups.clear()
        self._guests.clear()

    async def invalidate(self, user_id: str | None = None) -> None:
        """Forget cached answers (on user_change, team_join, subteam_members_changed), here
        at once and in the other instances from their next question on."""
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
        """Slack user id -> the config groups their user groups are bound to."""
        cached = self._groups.get("all")
        if cached is not None:
            return cached
        groups: dict[str, frozenset[str]] = await self._lists.run("groups", self._list_groups)
        return groups

    async def _list_groups(self) -> dict[str, frozenset[str]]:
        generation = self._generation
        members: dict[str, set[str]] = {}
        if self.config.slack_groups:  # nothing is bound: no need to ask Slack
            try:
                resp = await self.client.usergroups_list(include_users=True)
                group: dict[str, Any]
                for group in resp.get("usergroups", []):
                    bound = self.config.groups_bound_to(
                        str(group.get("id") or ""), str(group.get("handle") or "")
                    )
                    if not bound:
                        continue
                    uid: str
                    for uid in group.get("users", []) or []:
                        members.setdefault(uid, set()).update(bound)
            except Exception as exc:  # missing scope or Slack unreachable: config groups count
                log.warning(
                    "usergroups.list failed (%s); using config groups only",
                    exc.__class__.__name__,
                )
        result = {uid: frozenset(g) for uid, g in members.items()}
        if generation == self._generation:
            self._groups["all"] = result
        return result

    # -- resolving -------------------------------------------------------------------------
    async def resolve(self, ref: str) -> Asker:
        await self._check_version()
        cached = self._users.get(ref)
        if cached is not None:
            return cached
        return await self._lookups.run(ref, lambda: self._look_up(ref))

    async def _look_up(self, ref: str) -> Asker:
        """users.info for one person (at most one in flight per id, see ``resolve``)."""
        team = await self.team()
        generation = self._generation
        try:
            resp = await self.client.users_info(user=ref)
        except Exception as exc:
            log.warning("users.info failed for %s: %s", ref, exc.__class__.__name__)
            raise UnknownPerson("I couldn't look you up in Slack just now.") from None
        user = resp.get("user")
        asker = await self._asker(ref, user if isinstance(user, dict) else {}, team)
        # An answer without our team is not kept, nor one that began before a change.
        if team is not None and generation == self._generation:
            self._users[ref] = asker
        return asker

    async def _asker(self, ref: str, user: dict[str, Any], team: str | None) -> Asker:
        profile = user.get("profile") or {}
        email = str(profile.get("email") or "").strip().lower()
        if not email:
            raise UnknownPerson(
                "I can't see your email address in Slack, so I can't check which sources "
                "you may read. Ask an admin to check the app's users:read.email scope."
            )
        spot = place(user, team, self.enterprise_id)
        if spot.external and spot.email_verified and await self._email_is_a_members(email, ref):
            # Another organisation's account showing one of our members' emails: the email
            # is not theirs to use here, so it names nobody (public sources only).
            log.warning("external account %s shows the email of a member of our team", ref)
            spot = dataclasses.replace(spot, email_verified=False)
        person = self._people.get(email)
        groups = (await self._group_map()).get(ref, frozenset())
        if person is not None:
            groups |= frozenset(person.groups)
        guest = spot.guest or bool(person and person.guest)
        full = spot.full_member and not guest
        return Asker(
            email=email,
            groups=groups,
            guest=guest,
            name=str(user.get("real_name") or profile.get("real_name") or "") or None,
            ref=ref,
            workspace_admin=bool(full and (user.get("is_admin") or user.get("is_owner"))),
            external=spot.external,
            email_verified=spot.email_verified,
        )

    async def _email_is_a_members(self, email: str, ref: str) -> bool:
        """Whether a full member of our team (another account than ``ref``) has ``email``.
        When Slack cannot say, the answer is yes (fail closed)."""
        try:
            found = (await self.client.users_lookupByEmail(email=email)).get("user") or {}
        except SlackApiError as exc:
            return (exc.response.data or {}).get("error") != "users_not_found"
        except Exception:
            return True
        return str(found.get("id")) != ref and await self.member_id(found) is not None

    async def member_id(self, user: dict[str, Any]) -> str | None:
        """The id of a Slack user object (from users.lookupByEmail) when it is a full member
        of our team: only they may receive what goes to owners, approvers and reviewers."""
        spot = place(user, await self.team(), self.enterprise_id)
        return str(user.get("id")) if spot.full_member and user.get("id") else None
