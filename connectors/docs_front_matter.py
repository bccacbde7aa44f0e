"""Front matter of a document, read so that doubt closes the document (invariant 9).

A document may narrow its source's readers with ``readers: [...]`` in YAML front matter.
Anything that leaves doubt about what the author meant raises DocumentError, and the file
is skipped with a warning naming it, instead of being indexed for the whole source:

- ``readers`` that is empty (null, ``[]``, ``''``): nobody could read the document;
- a key that is not ``readers`` but looks like it (``Readers``, ``reader``, ``readres``,
  ``read_by``, ``audience``, ``visibility``…, see ``resembles_readers``), at any depth;
- front matter that starts after blank lines, whitespace, a BOM or invisible characters, or
  with ``+++`` (TOML), or without its opening ``---`` (a readers-like ``key:`` line in the
  document's first paragraph);
- YAML that is malformed, not a mapping, unclosed, over FRONT_MATTER_MAX_CHARS, nested too
  deeply, or uses anchors, aliases, merge keys or a key twice;
- a readers entry that is not exactly one valid reader.

Why not the ``python-frontmatter`` package: it fails open on every case above (it returns no
metadata, i.e. a public document) and expands aliases; what remains is small.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

import yaml

from bot.config import normalise_reader
from connectors.docs_files import DocumentError

FRONT_MATTER_MAX_CHARS = 16_384
MAX_DEPTH = 16
MAX_READERS = 200
# Keys we know. Only an unknown key is judged by its resemblance to ``readers``.
KNOWN_KEYS = frozenset(
    {
        "title", "readers", "updated", "date", "url", "tags", "description", "summary",
        "author", "authors", "owner", "created", "slug", "categories", "category",
        "keywords", "lang", "language", "layout", "draft", "weight", "id", "version",
        "status", "toc", "image", "sidebar_position", "sidebar_label", "permalink",
    }
)  # fmt: skip
# A key naming who may read: a fragment anywhere in its letters, or one of its words.
_READERISH_FRAGMENTS = (
    "reader", "readable", "readby", "access", "audience", "visib", "permission",
    "privacy", "viewer", "allowlist", "whitelist", "restrict", "confidential", "entitle",
)  # fmt: skip
_READERISH_WORDS = frozenset(
    {
        "read", "reads", "who", "acl", "acls", "allow", "allowed", "private", "public",
        "secret", "group", "groups", "role", "roles", "share", "shared", "user", "users",
        "members", "people", "visible", "hidden",
    }
)  # fmt: skip
_TOKEN_NAME = re.compile(r"[^\s,;\[\](){}'\"`<>\x00-\x1f\x7f]+")
_KEY_LINE = re.compile(r"[\s>*+\-{\"']{0,8}([^\W\d][\w.\-]{0,63})[\"']?\s*[:=]")
_QUOTED_KEY = re.compile(r"[\"']([^\W\d][\w.\-]{0,63})[\"']\s*:")


def split_front_matter(text: str) -> tuple[dict[str, Any], str]:
    """The front matter mapping and the body of ``text`` (already decoded, ``\\n`` lines).

    The first non-blank line decides: ``---`` opens YAML front matter (whatever precedes it
    is blank or invisible), ``+++`` is refused, anything else is body, whose first paragraph
    must then not hold a readers-like ``key:`` line.
    """
    start = _first_visible(text)
    end = text.find("\n", start)
    first = unicodedata.normalize("NFKC", text[start : end if end >= 0 else len(text)]).strip()
    if first.startswith("+++"):
        raise DocumentError(
            "has TOML front matter (+++), which is not read: use YAML between --- lines"
        )
    if not first.startswith("---"):
        check_body_start(text)
        return {}, text
    if first.strip("-"):
        raise DocumentError("front matter's opening --- line must hold nothing else")
    raw, body = _front_matter_block(text, end)
    meta = load_front_matter(raw)
    check_body_start(body)
    return meta, body


def _first_visible(text: str) -> int:
    """Index of the first character that is not whitespace, a BOM or another invisible
    format character (so ``\\n\\ufeff\\u200b---`` still opens front matter)."""
    i = 0
    while i < len(text) and (text[i].isspace() or unicodedata.category(text[i]) == "Cf"):
        i += 1
    return i


def _front_matter_block(text: str, newline: int) -> tuple[str, str]:
    """The YAML between the opening line (ending at ``newline``) and its closing line."""
    if newline < 0:
        raise DocumentError("front matter starts with --- but is never closed")
    pos = newline + 1
    while pos <= len(text):
        end = text.find("\n", pos)
        end = len(text) if end < 0 else end
        if pos - newline > FRONT_MATTER_MAX_CHARS:
            raise DocumentError(
                f"front matter is larger than {FRONT_MATTER_MAX_CHARS // 1024} KB (or never closed)"
            )
        if text[pos:end].rstrip() in {"---", "..."}:  # at column 0, as YAML and Jekyll read it
            return text[newline + 1 : pos], text[end + 1 :]
        pos = end + 1
    raise DocumentError("front matter starts with --- but is never closed")


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses anchors, aliases (the "billion laughs"), merge keys, repeated
    keys and deep nesting: each could make what the author sees differ from what we read,
    or make a 400-byte header expand into gigabytes."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise DocumentError(
                "front matter uses a YAML anchor or alias (& or *), which is not allowed"
            )
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise DocumentError(f"front matter is nested more than {MAX_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _value in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise DocumentError("front matter uses a YAML merge key (<<), which is not allowed")
            key = self.construct_object(key_node, deep=True)
            try:
                repeated = key in seen
            except TypeError:
                raise DocumentError(f"front matter key {_show(key)} is not a word") from None
            if repeated:
                raise DocumentError(f"front matter has the key {_show(key)} twice")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_front_matter(raw: str) -> dict[str, Any]:
    """The mapping in ``raw`` with its keys checked, or DocumentError."""
    if len(raw) > FRONT_MATTER_MAX_CHARS:
        raise DocumentError(f"front matter is larger than {FRONT_MATTER_MAX_CHARS // 1024} KB")
    try:
        meta = yaml.load(raw, Loader=_StrictLoader) if raw.strip() else {}
    except DocumentError:
        raise
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 2})" if mark else ""
        raise DocumentError(f"front matter is not valid YAML{where}") from None
    except Exception:  # a value YAML accepts but cannot build (2026-13-45), deep recursion…
        raise DocumentError("front matter cannot be read") from None
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise DocumentError("front matter must be a mapping of keys")
    _check_keys(meta)
    return meta


def _check_keys(meta: dict[Any, Any]) -> None:
    for key, value in meta.items():
        _check_word(key)
        if key not in KNOWN_KEYS and resembles_readers(key):
            raise DocumentError(_lookalike(key))
        if key != "readers":
            _check_nested(value)


def _check_nested(value: Any) -> None:
    """No readers-like key hides inside a value (``access: {readers: [...]}``)."""
    if isinstance(value, dict):
        for key, inner in value.items():
            _check_word(key)
            if key == "readers" or resembles_readers(key):
                raise DocumentError(_lookalike(key))
            _check_nested(inner)
    elif isinstance(value, list):
        for inner in value:
            _check_nested(inner)


def _check_word(key: Any) -> None:
    if not isinstance(key, str):
        raise DocumentError(f"front matter key {_show(key)} is not a word")


def _lookalike(key: str) -> str:
    return (
        f"front matter key {_show(key)} looks like 'readers' but is not it: write 'readers' "
        "(lower case, at the top level) or remove the key"
    )


def resembles_readers(key: str) -> bool:
    """True if ``key`` looks like it says who may read: equal to ``readers`` up to case,
    punctuation or invisible characters, within two edits of ``reader(s)``, or built from a
    word about access (``read_by``, ``audience``, ``visibility``, ``allowed_groups``…)."""
    folded = unicodedata.normalize("NFKC", key).casefold()
    compact = "".join(ch for ch in folded if ch.isalnum())
    if not compact:
        return False
    if compact.startswith("read") or any(f in compact for f in _READERISH_FRAGMENTS):
        return True
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", unicodedata.normalize("NFKC", key)).casefold()
    if any(word in _READERISH_WORDS for word in re.findall(r"[^\W\d_]+", spaced)):
        return True
    return _within_two_edits(compact, "readers") or _within_two_edits(compact, "reader")


def _within_two_edits(a: str, b: str) -> bool:
    """Levenshtein distance of ``a`` and ``b`` is at most 2 (short strings only)."""
    if abs(len(a) - len(b)) > 2:
        return False
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1] <= 2


def check_body_start(body: str) -> None:
    """Refuse a body whose start holds a readers-like ``key:`` line outside front matter:
    front matter without its opening ``---``, closed early (by ``...`` or a stray ``---``
    in a value), or in another format. The start is the first paragraph, or everything up
    to the last delimiter line (``---``, ``...``, ``+++``) in the first 16 KB, if later."""
    lines = body[:FRONT_MATTER_MAX_CHARS].split("\n")
    last_delimiter = max((i for i, line in enumerate(lines) if _is_delimiter(line)), default=-1)
    seen_content = False
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped:
            if seen_content and i > last_delimiter:
                return
            continue
        if stripped.startswith("#") or not stripped.strip("-+*_=~.`"):
            continue  # a heading or a delimiter line
        seen_content = True
        key = _readers_like_key(stripped)
        if key is not None:
            raise DocumentError(
                f"has a {key!r} line outside front matter, near its start: put it between "
                "--- lines at the very top"
            )


def _is_delimiter(line: str) -> bool:
    """A column-0 line that ends a YAML block or a thematic break: ``---``, ``...``, ``+++``."""
    text = line.rstrip()
    return len(text) >= 3 and (set(text) == {"-"} or set(text) == {"+"} or text == "...")


def _readers_like_key(stripped: str) -> str | None:
    head = unicodedata.normalize("NFKC", stripped[:300])
    keys = [m.group(1)] if (m := _KEY_LINE.match(head)) else []
    if head.startswith("{"):
        keys += _QUOTED_KEY.findall(head)
    return next((k for k in keys if k == "readers" or resembles_readers(k)), None)


def document_readers(meta: dict[str, Any]) -> tuple[str, ...]:
    """The reader tokens the document narrows to; ``("*",)`` when it does not narrow."""
    if "readers" not in meta:
        return ("*",)
    value = meta["readers"]
    if isinstance(value, str):
        value = [value] if value.strip() else []
    if value is None or value == []:
        raise DocumentError(
            "readers is empty, so nobody could read it: list its readers, or remove the key "
            "to use the source's readers"
        )
    if not isinstance(value, list):
        raise DocumentError("readers must be 'everyone' or a list such as [role:hr, a@x.test]")
    if len(value) > MAX_READERS:
        raise DocumentError(f"readers lists more than {MAX_READERS} entries")
    tokens = {_reader(entry) for entry in value}
    return ("*",) if "everyone" in tokens else tuple(sorted(tokens))


def _reader(entry: Any) -> str:
    if not isinstance(entry, str):
        raise DocumentError(f"readers: {_show(entry)} is not a reader")
    try:
        token = normalise_reader(entry)
    except ValueError as exc:
        raise DocumentError(f"readers: {exc}") from None
    kind, _, name = token.partition(":")
    if kind != "everyone" and not _TOKEN_NAME.fullmatch(name):
        raise DocumentError(
            f"readers: {_show(entry)} is not one reader (write a list: [role:a, group:b])"
        )
    return token


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "…"
