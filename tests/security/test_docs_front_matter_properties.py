"""Property tests for invariant 9: whatever front matter an author writes, parsing either
closes the document (DocumentError) or honours every readers-like key; reader entries are
validated in linear time."""

from __future__ import annotations

import contextlib
import re
import tempfile
import time
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bot.config import normalise_reader
from connectors.docs import DocumentError, parse_document

OUTSIDER = frozenset({"everyone", "user:out@x.test", "group:engineering"})

# Keys a person may write meaning "who may read this"; the first is the real one.
READERS_LIKE = [
    "readers",
    "Readers",
    "READERS",
    "reader",
    "readres",
    "raeders",
    "read_by",
    "readable_by",
    "readers_",
    "r\u0435aders",
    "readers\u200b",
    "audience",
    "visibility",
    "access",
    "allowed_readers",
    "ReadBy",
]
OTHER_KEYS = ["title", "updated", "date", "url", "tags", "description", "layout", "weight"]
NARROW_VALUES = [
    "[role:hr]",
    "role:hr",
    "[group:finance, hana@x.test]",
    "\n  - role:hr\n  - group:finance",
    "",
    "~",
    "null",
    "[]",
    "''",
    "[role:hr, '']",
    "[role:hr, 42]",
    "{role: hr}",
    "&x [role:hr]",
    "*x",
    "[role:hr",
    "'role:hr, group:finance'",
    '["a@" ]',
]
OTHER_VALUES = ["Travel", "2026-03-01", "2026-13-45", "[a, b]", "{a: 1}", "'x'", "|\n  ---\n", "*x"]
LEADS = st.text(alphabet=" \t\n\r\ufeff\u200b\u00a0", max_size=6)
OPENERS = st.sampled_from(["---", "--- ", "----", "+++", "---yaml", "\ufeff---"])
CLOSERS = st.sampled_from(["---", "...", "--- ", "+++", ""])


@st.composite
def documents(draw: st.DrawFn) -> tuple[str, bool]:
    """A document with random front matter; True if it carries a readers-like key."""
    entries: list[tuple[str, str]] = []
    for _ in range(draw(st.integers(0, 5))):
        if draw(st.booleans()):
            entries.append(
                (draw(st.sampled_from(READERS_LIKE)), draw(st.sampled_from(NARROW_VALUES)))
            )
        else:
            key = draw(st.sampled_from(OTHER_KEYS) | st.text(min_size=1, max_size=12))
            entries.append((key, draw(st.sampled_from(OTHER_VALUES) | st.text(max_size=20))))
    narrowed = any(key in READERS_LIKE for key, _ in entries)
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    lines = [draw(OPENERS), *(f"{k}: {v}" for k, v in entries), draw(CLOSERS)]
    body = "The canary is CANARY-PROP in this document."
    return draw(LEADS) + newline.join(lines) + newline + newline + body + newline, narrowed


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
@example(
    ("---\ntitle: |\n  ---\n\ntitle: |\n  ---\n\nreaders: [role:hr]\n---\n\nCANARY-PROP\n", True)
)
@example(("---\ntitle: a\n---\n\nfoo\n\nreaders: [role:hr]\n---\n\nCANARY-PROP\n", True))
def test_random_front_matter_never_fails_open(case: tuple[str, bool]) -> None:
    text, narrowed = case
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "doc.md"
        path.write_bytes(text.encode("utf-8", errors="surrogatepass"))
        try:
            doc = parse_document(path, "doc.md")
        except DocumentError:
            return
    visible = "*" in doc.readers or bool(OUTSIDER & set(doc.readers))
    shown = any("CANARY-PROP" in c.body for c in doc.chunks)
    if narrowed:
        assert not (visible and shown), (text, doc.readers)


FRAGMENTS = [
    "---\n",
    "\n",
    "readers: ",
    "updated: ",
    "date: ",
    "2026-13-45",
    "2026-02-30",
    "[" * 300,
    "{a: ",
    "&a ",
    "*a",
    "!!python/name:os.system ",
    "!!binary ",
    "? [a]\n: b\n",
    "<<: {readers: everyone}\n",
    "\t",
    "\x00",
    "\ufeff",
]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=20), max_size=12)
    .map("".join)
    .map(lambda text: "---\n" + text + "\n---\nBody.\n")
    | st.text(max_size=200)
)
@example("---\nupdated: 2026-13-45\n---\nBody.\n")
@example("---\n" + "[" * 3000 + "\n---\nBody.\n")
def test_arbitrary_documents_raise_only_document_error(text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "doc.md"
        path.write_bytes(text.encode("utf-8", errors="surrogatepass"))
        with contextlib.suppress(DocumentError):
            parse_document(path, "doc.md")


TOKEN = re.compile(r"everyone|(role|group|channel):[^\s#@].*|user:[^@\s:]+@[^@\s:]+\.[^@\s:]+")
HOSTILE = st.builds(
    lambda lead, n, tail: lead + "a@" + "a." * n + tail,
    st.sampled_from(["", " ", "x"]),
    st.integers(0, 8000),
    st.sampled_from([":", " x", "@", "", "a"]),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(max_size=40) | HOSTILE | st.emails(), max_size=6))
def test_reader_entries_are_a_token_or_a_value_error_in_linear_time(entries: list[str]) -> None:
    for entry in entries:
        started = time.perf_counter()
        try:
            token = normalise_reader(entry)
        except ValueError:
            token = None
        assert time.perf_counter() - started < 0.05, len(entry)
        if token is not None:
            assert TOKEN.fullmatch(token), (entry, token)
            assert len(token) <= 330
