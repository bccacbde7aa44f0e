"""The ``http`` connector: a JSON search API (a wiki, a ticket system) described in config.

    - name: wiki
      kind: http
      readers: everyone
      url: https://wiki.acme.test/api/search?q={query}&limit={k}
      auth_header: Authorization          # optional; its value comes from the environment
      auth_env: WIKI_TOKEN                #   (e.g. "Bearer …"), never from the config file
      identity_header: X-Concierge-User   # optional; the asker's email is forwarded
      results: results                    # where the list of hits is in the JSON answer
      fields: {title: title, text: snippet, uri: url, readers: readers, updated: updated}

The base class has already checked that the asker may read the source. Each hit's own
``readers`` (when mapped) narrows further, like front matter. Any failure — a timeout, a
status other than 200, malformed JSON — fails closed: the source is reported unavailable and
nothing unfiltered is ever returned.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

import aiohttp

from bot.config import normalise_reader
from bot.core.types import Passage
from connectors.base import Connector, SourceUnavailable

MAX_BYTES = 2_000_000


def _get(data: Any, path: str) -> Any:
    for part in [p for p in path.split(".") if p]:
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data


class HttpConnector(Connector):
    kind = "http"

    def _headers(self, principals: frozenset[str]) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        auth_header = self.source.setting("auth_header")
        if auth_header:
            value = self.context.secrets.get(str(self.source.setting("auth_env", "")))
            if not value:
                raise SourceUnavailable(f"{self.name} has no credentials configured")
            headers[str(auth_header)] = value
        identity_header = self.source.setting("identity_header")
        if identity_header:
            emails = sorted(p[5:] for p in principals if p.startswith("user:"))
            headers[str(identity_header)] = emails[0] if emails else ""
        return headers

    def _passage(self, hit: dict[str, Any]) -> Passage | None:
        fields: dict[str, str] = self.source.setting("fields", {}) or {}
        text = _get(hit, fields.get("text", "text"))
        if not isinstance(text, str) or not text.strip():
            return None
        readers_raw = _get(hit, fields.get("readers", "readers"))
        readers: tuple[str, ...] = ("*",)
        if readers_raw is not None:
            items = [readers_raw] if isinstance(readers_raw, str) else readers_raw
            try:
                tokens = {normalise_reader(str(r)) for r in items}
            except (ValueError, TypeError):
                return None  # unreadable ACL: fail closed for this hit
            if not tokens:
                return None
            readers = ("*",) if "everyone" in tokens else tuple(sorted(tokens))
        title = _get(hit, fields.get("title", "title"))
        uri = _get(hit, fields.get("uri", "url"))
        updated = _get(hit, fields.get("updated", "updated"))
        return Passage(
            source=self.name,
            title=str(title or self.source.title or self.name),
            uri=str(uri or ""),
            text=text.strip()[:4000],
            score=float(_get(hit, fields.get("score", "score")) or 0.0),
            readers=readers,
            location=str(uri or ""),
            updated=str(updated) if updated else None,
            data_class=self.source.data_class,
        )

    async def _search(self, *, query: str, principals: frozenset[str], k: int) -> list[Passage]:
        template = str(self.source.setting("url", ""))
        url = template.replace("{query}", urllib.parse.quote(query[:500])).replace("{k}", str(k))
        timeout = aiohttp.ClientTimeout(total=self.source.timeout_s)
        try:
            headers = self._headers(principals)
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(url, headers=headers) as resp,
            ):
                if resp.status != 200:
                    raise SourceUnavailable(f"{self.name} answered HTTP {resp.status}")
                body = await resp.content.read(MAX_BYTES + 1)
        except aiohttp.ClientError as exc:
            raise SourceUnavailable(
                f"{self.name} could not be reached ({exc.__class__.__name__})"
            ) from None
        if len(body) > MAX_BYTES:
            raise SourceUnavailable(f"{self.name} answered with more than 2 MB")
        try:
            data = json.loads(body)
        except ValueError:
            raise SourceUnavailable(f"{self.name} did not answer with JSON") from None
        hits = _get(data, str(self.source.setting("results", "results")))
        if not isinstance(hits, list):
            raise SourceUnavailable(f"{self.name} answered without a results list")
        passages = [p for h in hits if isinstance(h, dict) and (p := self._passage(h))]
        return passages[:k]
