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

The question only ever becomes one value of the URL (see ``url_template``). Redirects are
followed by hand, at most ``MAX_REDIRECTS`` and only on the configured scheme, host and port,
so the credentials and the asker's identity never leave that origin. With an
``identity_header`` the hits are the asker's own view: each passage is marked ``personal``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import aiohttp
from yarl import URL

from bot.config import normalise_reader
from bot.core.types import Passage
from connectors.asker import sole_asker_email
from connectors.base import Connector, SourceUnavailable
from connectors.url_template import UrlTemplate

log = logging.getLogger("concierge.connectors.http")

MAX_BYTES = 2_000_000
MAX_REDIRECTS = 3
REDIRECTS = frozenset({301, 302, 303, 307, 308})


def _get(data: Any, path: str) -> Any:
    for part in [p for p in path.split(".") if p]:
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data


class HttpConnector(Connector):
    kind = "http"

    def _template(self) -> UrlTemplate:
        try:
            return UrlTemplate.parse(str(self.source.setting("url", "")))
        except ValueError as exc:  # the config check refuses these; fail closed regardless
            raise SourceUnavailable(f"{self.name} has an unusable url ({exc})") from None

    def _asker(self, principals: frozenset[str]) -> str | None:
        """The asker's email when this source fetches as them (an identity header)."""
        if not self.source.setting("identity_header"):
            return None
        return sole_asker_email(self.name, principals)

    def _headers(self, asker: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        auth_header = self.source.setting("auth_header")
        if auth_header:
            value = self.context.secrets.get(str(self.source.setting("auth_env", "")))
            if not value:
                raise SourceUnavailable(f"{self.name} has no credentials configured")
            headers[str(auth_header)] = value
        identity_header = self.source.setting("identity_header")
        if identity_header and asker:
            headers[str(identity_header)] = asker
        return headers

    def _passage(self, hit: dict[str, Any], asker: str | None) -> Passage | None:
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
            personal=asker,
        )

    async def _fetch(self, template: UrlTemplate, url: URL, headers: dict[str, str]) -> bytes:
        """GET ``url``, following up to ``MAX_REDIRECTS`` redirects on the configured origin
        only (the headers carry credentials); returns the body of the final 200 answer."""
        timeout = aiohttp.ClientTimeout(total=self.source.timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for _hop in range(MAX_REDIRECTS + 1):
                async with session.get(url, headers=headers, allow_redirects=False) as resp:
                    if resp.status == 200:
                        return await resp.content.read(MAX_BYTES + 1)
                    location = resp.headers.get("Location")
                    if resp.status not in REDIRECTS or not location:
                        raise SourceUnavailable(f"{self.name} answered HTTP {resp.status}")
                url = self._redirect_target(template, url, location)
        raise SourceUnavailable(f"{self.name} redirected more than {MAX_REDIRECTS} times")

    def _redirect_target(self, template: UrlTemplate, url: URL, location: str) -> URL:
        """Where a redirect leads, if it stays on the configured origin; otherwise fail
        closed (logged with the other origin only: no path, query or header values)."""
        try:
            target = url.join(URL(location))
        except ValueError:
            raise SourceUnavailable(f"{self.name} redirected to an invalid URL") from None
        if not template.same_origin(target):
            log.warning(
                "source %s redirected to another origin (%s); not followed",
                self.name,
                target.raw_host or "?",
            )
            raise SourceUnavailable(f"{self.name} redirected to another site")
        return target

    async def _search(self, *, query: str, principals: frozenset[str], k: int) -> list[Passage]:
        template = self._template()
        asker = self._asker(principals)
        headers = self._headers(asker)
        try:
            url = template.render(query[:500], k)
        except ValueError as exc:
            raise SourceUnavailable(f"{self.name} cannot be asked this question ({exc})") from None
        try:
            body = await self._fetch(template, url, headers)
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
        passages = [p for h in hits if isinstance(h, dict) and (p := self._passage(h, asker))]
        return passages[:k]
