"""The http connector's configured ``url``, and the one way a question is put into it.

A question is text from a person, and the URL is fetched with the source's credentials, so
the question may only ever become *one value* of the URL, never its structure:

- in the path, ``{query}`` becomes one path segment with every reserved character escaped
  (``/``, ``?``, ``#``, ``%`` …), and a segment that would read ``.`` or ``..`` is refused;
- in the query string, it becomes one form-encoded value (``&``, ``=``, ``#``, ``+`` escaped),
  so it cannot add, replace or cut off parameters;
- in the scheme, host, port or fragment it is refused when the config is loaded.

After substitution the final URL is checked again against the template (same scheme, host,
port, path prefix and parameter names, no dot segment); any difference fails closed.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass

from yarl import URL

from bot.config import check_http_url

QUERY = "{query}"
K = "{k}"
# Stand-ins for the placeholders while the template is normalised: only unreserved
# characters, so that no URL parser changes or splits them.
_Q = "cnrgqueryplaceholder7q"
_K = "cnrgkplaceholder7k"
_PLACEHOLDERS = re.compile(f"{_Q}|{_K}")
DOT_SEGMENTS = frozenset({".", ".."})


def _param_names(raw_query: str) -> tuple[str, ...]:
    return tuple(k for k, _ in urllib.parse.parse_qsl(raw_query, keep_blank_values=True))


def _origin_key(url: URL) -> tuple[str, str, int | None]:
    """Scheme, host and port, with a default port spelt out or not counting the same."""
    return url.scheme.lower(), (url.raw_host or "").lower(), url.port


def _has_dot_segment(raw_path: str) -> bool:
    return any(urllib.parse.unquote(s) in DOT_SEGMENTS for s in raw_path.split("/"))


@dataclass(frozen=True)
class UrlTemplate:
    """A checked, normalised ``url`` setting (placeholders kept as stand-ins)."""

    origin: URL  # scheme, host and port: the only place credentials are ever sent
    raw_path: str
    raw_query: str
    path_prefix: str  # the path before the first placeholder (all of it if none)
    path_fixed: bool  # no placeholder in the path: the final path must equal it
    param_names: tuple[str, ...]

    @classmethod
    def parse(cls, url: str) -> UrlTemplate:
        """Check and normalise ``url``; raises ValueError (a config error) if unusable."""
        check_http_url(url)
        if _Q in url or _K in url:
            raise ValueError("the url contains a reserved placeholder name")
        normal = URL(url.replace(QUERY, _Q).replace(K, _K))
        if _Q not in normal.raw_path and _Q not in normal.raw_query_string:
            raise ValueError("the url's {query} must be in its path or query string")
        cut = min(
            (i for i in (normal.raw_path.find(_Q), normal.raw_path.find(_K)) if i >= 0), default=-1
        )
        return cls(
            origin=normal.origin(),
            raw_path=normal.raw_path,
            raw_query=normal.raw_query_string,
            path_prefix=normal.raw_path if cut < 0 else normal.raw_path[:cut],
            path_fixed=cut < 0,
            param_names=_param_names(normal.raw_query_string),
        )

    def render(self, question: str, k: int) -> URL:
        """The URL to fetch for ``question``; raises ValueError if the question would change
        anything but its own value (then the source fails closed for that question)."""
        segment = urllib.parse.quote(question, safe="", errors="replace")
        value = urllib.parse.quote_plus(question, safe="", errors="replace")
        # One pass each, so that text from the question is never substituted again.
        path = _PLACEHOLDERS.sub(lambda m: segment if m[0] == _Q else str(int(k)), self.raw_path)
        query = _PLACEHOLDERS.sub(lambda m: value if m[0] == _Q else str(int(k)), self.raw_query)
        text = str(self.origin) + path + (f"?{query}" if query else "")
        final = URL(text, encoded=True)
        self.check(final)
        return final

    def same_origin(self, url: URL) -> bool:
        """Whether ``url`` is on the configured scheme, host and port."""
        return (
            url.is_absolute()
            and url.user is None
            and url.password is None
            and _origin_key(url) == _origin_key(self.origin)
        )

    def check(self, final: URL) -> None:
        """Raise ValueError unless ``final`` kept the template's structure."""
        if not self.same_origin(final):
            raise ValueError("the question would change the URL's scheme, host or port")
        if self.path_fixed and final.raw_path != self.raw_path:
            raise ValueError("the question would change the URL's path")
        if not final.raw_path.startswith(self.path_prefix) or _has_dot_segment(final.raw_path):
            raise ValueError("the question would change the URL's path")
        if _param_names(final.raw_query_string) != self.param_names or final.raw_fragment:
            raise ValueError("the question would change the URL's parameters")
