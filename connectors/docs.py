"""The ``docs`` connector: Markdown and plain-text files in a folder.

Files may start with YAML front matter (``title``, ``readers``, ``updated``, ``url``).
``readers`` can only narrow the source's readers, and front matter that cannot be read with
certainty closes the document (``docs_front_matter``). Files are read only inside the source
folder, never through a link (``docs_files``). Files are split into bounded passages by
heading and paragraph and indexed with Tantivy (BM25 with block-max WAND, so a query does not
score every passage). The index is derived local data under the data folder, refreshed
incrementally: only files whose size or modification time changed are re-read. A skipped
file's warning is kept in the manifest, so every run reports it until the file is fixed.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import hashlib
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path, PurePosixPath
from typing import Any

import tantivy

from bot.core.embeddings import Embedder, EmbeddingError
from bot.core.text import content_words, slug
from bot.core.types import Passage
from connectors.base import Connector, ConnectorContext, SourceUnavailable
from connectors.docs_dense import DenseStore, passage_key
from connectors.docs_files import (
    MAX_FILE_BYTES,
    SUFFIXES,
    DocumentError,
    FolderScan,
    read_document,
    scan_folder,
)
from connectors.docs_front_matter import document_readers, split_front_matter

__all__ = ["MAX_FILE_BYTES", "SUFFIXES", "DocsConnector", "DocsIndex", "DocumentError"]

log = logging.getLogger("concierge.connectors.docs")

SCHEMA_VERSION = 4  # 4: a passage key for the dense vectors (re-index all)
CHUNK_WORDS = 160
MAX_PASSAGE_CHARS = 4_000
MAX_PASSAGES_PER_FILE = 2_000
MAX_TITLE_CHARS = 300
MAX_URI_CHARS = 2_000
# Hybrid search: each side proposes max(k * POOL_FACTOR, MIN_POOL) readable passages, and
# the union is ranked by ``fuse``.
POOL_FACTOR = 2
MIN_POOL = 12
BM25_HALF = 8.0
DENSE_WEIGHT = 0.5


def build_schema() -> tantivy.Schema:
    sb = tantivy.SchemaBuilder()
    sb.add_text_field("path", stored=True, tokenizer_name="raw")
    sb.add_text_field("title", stored=True, tokenizer_name="en_stem")
    sb.add_text_field("section", stored=True, tokenizer_name="en_stem")
    sb.add_text_field("body", stored=True, tokenizer_name="en_stem")
    sb.add_text_field("readers", stored=True, tokenizer_name="raw", index_option="basic")
    sb.add_text_field("uri", stored=True, tokenizer_name="raw", index_option="basic")
    sb.add_text_field("location", stored=True, tokenizer_name="raw", index_option="basic")
    sb.add_text_field("updated", stored=True, tokenizer_name="raw", index_option="basic")
    sb.add_text_field("key", stored=True, tokenizer_name="raw", index_option="basic")
    return sb.build()


@dataclass(frozen=True)
class Chunk:
    title: str
    section: str
    body: str
    location: str


@dataclass(frozen=True)
class ParsedDoc:
    path: str
    title: str
    readers: tuple[str, ...]
    updated: str
    uri: str
    chunks: tuple[Chunk, ...]
    truncated: bool = False  # more than MAX_PASSAGES_PER_FILE passages: the rest is not indexed


def decode(raw: bytes) -> str:
    """UTF-8 text with ``\n`` line ends. UTF-16/32 or NUL bytes are refused rather than read
    as garbage, which would hide front matter and expose the text between the NULs."""
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\x00" in raw:
        raise DocumentError("is not UTF-8 text (save it as UTF-8)")
    return raw.decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\r", "\n")


def chunk_markdown(title: str, body: str, rel: str) -> list[Chunk]:
    """Split by headings, then pack paragraphs into passages of about CHUNK_WORDS words and
    at most MAX_PASSAGE_CHARS characters; at most MAX_PASSAGES_PER_FILE + 1 are returned
    (one more than indexed, so that the caller can tell the file was cut)."""
    title = title or _first_h1(body)
    chunks = islice(_pack(_paragraphs(body), rel), MAX_PASSAGES_PER_FILE + 1)
    return [Chunk(title, c.section, c.body, c.location) for c in chunks]


def _first_h1(body: str) -> str:
    for line in body.split("\n"):
        stripped = line.strip()
        if stripped.startswith("# "):
            return stripped[2:].strip()[:MAX_TITLE_CHARS]
    return ""


def _is_heading(stripped: str) -> bool:
    return stripped.startswith("#") and stripped.lstrip("#").startswith(" ")


def _paragraphs(body: str) -> Iterator[tuple[str, str | None]]:
    """(heading, paragraph) in order; a None paragraph marks the start of a new section."""
    heading = ""
    lines: list[str] = []
    for line in body.split("\n"):
        stripped = line.strip()
        if _is_heading(stripped) or not stripped:
            if lines:
                yield heading, "\n".join(lines).strip()
                lines = []
            if stripped:
                heading = stripped.lstrip("#").strip()[:MAX_TITLE_CHARS]
                yield heading, None
        else:
            lines.append(line.rstrip())
    if lines:
        yield heading, "\n".join(lines).strip()


def _pack(paragraphs: Iterator[tuple[str, str | None]], rel: str) -> Iterator[Chunk]:
    heading = ""
    buf: list[str] = []
    words = chars = 0
    for head, paragraph in paragraphs:
        if paragraph is None:
            if buf:
                yield _chunk(heading, buf, rel)
                buf, words, chars = [], 0, 0
            heading = head
            continue
        for piece in _split_long(paragraph):
            n = len(piece.split())
            if buf and (words + n > CHUNK_WORDS or chars + 2 + len(piece) > MAX_PASSAGE_CHARS):
                yield _chunk(heading, buf, rel)
                buf, words, chars = [], 0, 0
            chars += len(piece) + (2 if buf else 0)
            buf.append(piece)
            words += n
    if buf:
        yield _chunk(heading, buf, rel)


def _split_long(paragraph: str) -> list[str]:
    """A paragraph as it is, or, past 2 × CHUNK_WORDS words or MAX_PASSAGE_CHARS characters,
    cut into pieces of CHUNK_WORDS words and MAX_PASSAGE_CHARS characters at most (a wall of
    text with no blank line, or one enormous "word", still makes bounded passages)."""
    if len(paragraph) <= MAX_PASSAGE_CHARS and len(paragraph.split()) <= 2 * CHUNK_WORDS:
        return [paragraph]
    pieces: list[str] = []
    buf: list[str] = []
    size = 0
    for word in paragraph.split():
        for i in range(0, len(word), MAX_PASSAGE_CHARS):
            part = word[i : i + MAX_PASSAGE_CHARS]
            if buf and (len(buf) >= CHUNK_WORDS or size + 1 + len(part) > MAX_PASSAGE_CHARS):
                pieces.append(" ".join(buf))
                buf, size = [], 0
            size += len(part) + (1 if buf else 0)
            buf.append(part)
    if buf:
        pieces.append(" ".join(buf))
    return pieces


def _chunk(heading: str, paragraphs: list[str], rel: str) -> Chunk:
    anchor = f"#{slug(heading)}" if heading else ""
    return Chunk(title="", section=heading, body="\n\n".join(paragraphs), location=rel + anchor)


def read_readers(raw: bytes) -> tuple[tuple[str, ...], dict[str, Any], str]:
    """Readers, front matter and body of a document's bytes (DocumentError when in doubt)."""
    meta, body = split_front_matter(decode(raw))
    return document_readers(meta), meta, body


def parse_bytes(raw: bytes, rel: str, *, mtime: float, base_url: str | None = None) -> ParsedDoc:
    """A document's passages and labels from its bytes; DocumentError closes the document."""
    readers, meta, body = read_readers(raw)
    title = _text(meta.get("title"), MAX_TITLE_CHARS)
    updated = meta.get("updated") or meta.get("date")
    if updated is None:
        updated = datetime.fromtimestamp(mtime, UTC).date().isoformat()
    chunks = chunk_markdown(title, body, rel)
    truncated = len(chunks) > MAX_PASSAGES_PER_FILE
    title = title or (chunks[0].title if chunks else "") or PurePosixPath(rel).stem
    kept = [Chunk(title, c.section, c.body, c.location) for c in chunks[:MAX_PASSAGES_PER_FILE]]
    url = _text(meta.get("url"), MAX_URI_CHARS)
    uri = url or (base_url.rstrip("/") + "/" + rel if base_url else rel)
    passages = tuple(c for c in kept if c.body.strip())
    return ParsedDoc(rel, title, readers, _text(updated, 64), uri, passages, truncated)


def _text(value: Any, limit: int) -> str:
    return str(value).strip()[:limit] if value else ""


def parse_document(path: Path, rel: str, *, base_url: str | None = None) -> ParsedDoc:
    """Read and parse ``path``, the document ``rel`` of the folder ``path`` minus ``rel``,
    with the same rules as the index (no links, size cap, fail-closed front matter)."""
    folder = path
    for _ in PurePosixPath(rel).parts:
        folder = folder.parent
    raw, mtime = read_document(folder, rel)
    return parse_bytes(raw, rel, mtime=mtime, base_url=base_url)


class DocsIndex:
    """A Tantivy index of one folder, with a manifest of what was indexed from which file."""

    def __init__(
        self,
        folder: Path,
        index_dir: Path,
        *,
        base_url: str | None = None,
        embedder: Embedder | None = None,
    ) -> None:
        self.folder = folder
        self.dir = index_dir
        self.base_url = base_url
        self._lock = threading.Lock()
        self._index: tantivy.Index | None = None
        self.warnings: dict[str, str] = {}
        self.dense = DenseStore(index_dir, embedder) if embedder is not None else None
        self.dense_warning: str | None = None

    @property
    def manifest_path(self) -> Path:
        return self.dir / "manifest.json"

    def _open(self) -> tantivy.Index:
        if self._index is None:
            manifest = self._read_manifest()
            if manifest.get("schema") != SCHEMA_VERSION and self.dir.exists():
                for child in self.dir.iterdir():
                    if child.is_file():
                        child.unlink()
            self.dir.mkdir(parents=True, exist_ok=True)
            self._index = tantivy.Index(build_schema(), path=str(self.dir), reuse=True)
        return self._index

    def _read_manifest(self) -> dict[str, Any]:
        try:
            data = json.loads(self.manifest_path.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def scan(self) -> FolderScan:
        """The folder's documents and the files skipped (links, oversize), without reading."""
        try:
            return scan_folder(self.folder)
        except OSError as exc:
            raise SourceUnavailable(
                f"folder {self.folder} cannot be read ({exc.strerror})"
            ) from None

    def refresh(self) -> int:
        """Re-index files that changed since the last refresh; returns how many changed."""
        if not self.folder.is_dir():
            raise SourceUnavailable(f"folder {self.folder} does not exist")
        with self._lock:
            index = self._open()
            manifest = self._read_manifest()
            known: dict[str, Any] = (
                manifest.get("files", {}) if manifest.get("schema") == SCHEMA_VERSION else {}
            )
            scan = self.scan()
            current = scan.files
            rebuild = self.dense is not None and not self.dense.loaded and not self.dense.load()
            changed = [
                r
                for r, sig in current.items()
                if rebuild or known.get(r, {}).get("sig") != list(sig)
            ]
            removed = [r for r in known if r not in current]
            if changed or removed:
                known = self._reindex(index, known, current, changed, removed)
            self._set_warnings(scan, known)
            return len(changed) + len(removed)

    def _reindex(
        self,
        index: tantivy.Index,
        known: dict[str, Any],
        current: dict[str, tuple[int, int]],
        changed: list[str],
        removed: list[str],
    ) -> dict[str, Any]:
        """Re-read ``changed``, drop ``removed``; returns the new manifest entries."""
        writer = self._writer(index)
        new_known = {r: v for r, v in known.items() if r in current}
        vectors: list[tuple[str, str, tuple[str, ...], str]] = []
        for rel in removed:
            writer.delete_documents_by_term("path", rel)
        for rel in changed:
            writer.delete_documents_by_term("path", rel)
            entry: dict[str, Any] = {"sig": list(current[rel]), "chunks": 0}
            try:
                raw, mtime = read_document(self.folder, rel)
                doc = parse_bytes(raw, rel, mtime=mtime, base_url=self.base_url)
            except DocumentError as exc:
                entry["warning"] = f"{rel}: {exc}; the file is skipped until it is fixed"
            else:
                for ordinal, c in enumerate(doc.chunks):
                    key = passage_key(rel, ordinal)
                    vectors.append((key, rel, doc.readers, f"{doc.title}. {c.section}. {c.body}"))
                    writer.add_document(
                        tantivy.Document(
                            path=rel,
                            title=doc.title,
                            section=c.section,
                            body=c.body,
                            readers=list(doc.readers),
                            uri=doc.uri,
                            location=c.location,
                            updated=doc.updated,
                            key=key,
                        )
                    )
                entry["chunks"] = len(doc.chunks)
                if doc.truncated:
                    entry["warning"] = (
                        f"{rel}: has more than {MAX_PASSAGES_PER_FILE} passages; only the "
                        "first are indexed (split the file)"
                    )
            new_known[rel] = entry
        self._update_dense(set(changed) | set(removed), vectors)
        writer.commit()
        writer.wait_merging_threads()
        index.reload()
        tmp = self.manifest_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"schema": SCHEMA_VERSION, "files": new_known}))
        tmp.replace(self.manifest_path)
        return new_known

    def _update_dense(
        self, drop: set[str], added: list[tuple[str, str, tuple[str, ...], str]]
    ) -> None:
        """Bring the passage vectors in line with the documents. When the embedding provider
        fails, the vectors are dropped (never left half-updated) and words alone answer
        until a later refresh rebuilds them."""
        if self.dense is None:
            # Indexed without vectors: any stored ones no longer match the documents.
            for stale in self.dir.glob("dense-*"):
                stale.unlink(missing_ok=True)
            return
        try:
            self.dense.update(drop, added)
            self.dense.save()
            self.dense_warning = None
        except (EmbeddingError, OSError) as exc:
            self.dense_warning = f"passage vectors could not be computed ({exc}); words only"
            log.warning("%s: %s", self.folder.name, self.dense_warning)
            self.dense.loaded = False
            self.dense.vectors_path.unlink(missing_ok=True)
            self.dense.meta_path.unlink(missing_ok=True)

    def _set_warnings(self, scan: FolderScan, known: dict[str, Any]) -> None:
        """Every skipped or cut file, named, from this scan and the manifest (a file skipped
        in an earlier run is not re-read, but is still reported). Replaced, never mutated,
        so a reader holding the previous dict sees a consistent one."""
        found = {
            rel: f"{rel}: {why}; the file is skipped until it is fixed"
            for rel, why in scan.skipped.items()
        }
        found |= {r: v["warning"] for r, v in known.items() if r in scan.files and v.get("warning")}
        self.warnings = dict(sorted(found.items()))

    def _writer(self, index: tantivy.Index) -> Any:
        """Tantivy allows one writer per index; wait briefly if another process holds it."""
        deadline = time.monotonic() + 30
        while True:
            try:
                return index.writer(heap_size=50_000_000, num_threads=1)
            except ValueError:
                if time.monotonic() > deadline:
                    raise SourceUnavailable("the index is locked by another process") from None
                time.sleep(0.05)

    def search(self, query: str, principals: frozenset[str], k: int) -> list[dict[str, Any]]:
        """The ``k`` best passages the holder of ``principals`` may read: BM25 and, when
        passage vectors exist, dense similarity, both filtered by readers before ranking,
        fused into one score (``score``, 0..1, comparable across sources)."""
        if not self.folder.is_dir():
            raise SourceUnavailable(f"folder {self.folder} does not exist")
        index = self._open()
        pool = max(k * POOL_FACTOR, MIN_POOL)
        acl = tantivy.Query.term_set_query(index.schema, "readers", sorted(principals | {"*"}))
        searcher = index.searcher()
        words: dict[str, tuple[float, dict[str, Any]]] = {}
        terms = content_words(query)[:48]
        if terms:
            text_q, _errors = index.parse_query_lenient(
                " ".join(terms),
                ["title", "section", "body"],
                field_boosts={"title": 2.0, "section": 1.5},
            )
            q = tantivy.Query.boolean_query(
                [(tantivy.Occur.Must, text_q), (tantivy.Occur.Must, acl)]
            )
            # Reading stored text is the costly part: words propose k, meaning proposes more.
            for score, address in searcher.search(q, limit=k, count=False).hits:
                row = _row(searcher.doc(address))
                words[(row.get("key") or [""])[0] or row["location"][0]] = (score, row)
        vector = self._query_vector(query)
        if vector is None or self.dense is None:
            ranked = sorted(words, key=lambda key: words[key][0], reverse=True)[:k]
            return [words[key][1] | {"score": fuse(words[key][0], None)} for key in ranked]
        near = dict(self.dense.search(vector, principals, pool))
        for key in words:
            if key not in near:
                near[key] = self.dense.cosine(vector, key) or 0.0
        fused = {
            key: fuse(words[key][0] if key in words else 0.0, cos) for key, cos in near.items()
        }
        best = sorted(fused, key=lambda key: fused[key], reverse=True)[:k]
        # Stored text is read only for the winners found by meaning alone.
        for row in self._rows_by_key(index, searcher, acl, [x for x in best if x not in words]):
            words[row["key"][0]] = (0.0, row)
        return [words[key][1] | {"score": fused[key]} for key in best if key in words]

    def _query_vector(self, query: str) -> Any:
        """The question's vector, or None when this index has none (or the provider failed:
        words alone answer meanwhile)."""
        if self.dense is None or not self.dense.loaded or not query.strip():
            return None
        try:
            return self.dense.embedder.query_vector(query)
        except EmbeddingError as exc:
            log.warning("embedding a question for %s failed: %s", self.folder.name, exc)
            return None

    def _rows_by_key(
        self, index: tantivy.Index, searcher: Any, acl: tantivy.Query, keys: list[str]
    ) -> list[dict[str, Any]]:
        """The stored passages with these keys, readers checked again by Tantivy."""
        if not keys:
            return []
        by_key = tantivy.Query.term_set_query(index.schema, "key", keys)
        q = tantivy.Query.boolean_query([(tantivy.Occur.Must, by_key), (tantivy.Occur.Must, acl)])
        hits = searcher.search(q, limit=len(keys), count=False).hits
        return [_row(searcher.doc(address)) for _score, address in hits]


def _row(doc: Any) -> dict[str, Any]:
    return {f: doc.get_all(f) for f in doc.to_dict()}


def fuse(bm25: float, cosine: float | None) -> float:
    """One relevance score in 0..1 from a BM25 score (saturated: 0 at no match, one half at
    BM25_HALF) and, when the source has vectors, the cosine similarity (weighted DENSE_WEIGHT).
    Weighted rather than reciprocal-rank fusion: the score keeps its meaning across questions,
    so it can rank passages of several sources together and decide whether there is an
    answer at all (see BENCHMARKS.md for the measurements behind the weights)."""
    words = bm25 / (bm25 + BM25_HALF) if bm25 > 0 else 0.0
    if cosine is None:
        return words
    return (1 - DENSE_WEIGHT) * words + DENSE_WEIGHT * max(0.0, cosine)


class DocsConnector(Connector):
    kind = "docs"

    def __init__(self, source: Any, context: ConnectorContext) -> None:
        super().__init__(source, context)
        folder = context.config.resolve(str(source.setting("path", source.name)))
        key = hashlib.sha1(str(folder).encode()).hexdigest()[:10]
        embedder = context.embedder
        if embedder is not None and source.data_class not in embedder.accepted_classes:
            embedder = None  # its text may not go to that provider: words only
        self.index = DocsIndex(
            folder,
            context.index_dir / f"{source.name}-{key}",
            base_url=source.setting("base_url"),
            embedder=embedder,
        )
        self._last_refresh = 0.0
        self._refresh_lock = asyncio.Lock()
        self._refresh_task: asyncio.Task[None] | None = None

    async def prepare(self) -> list[str]:
        try:
            await self._refresh(force=True)
        except SourceUnavailable as exc:
            return [f"source {self.name}: {exc}"]
        return [f"source {self.name}: {w}" for w in self.index.warnings.values()]

    async def index_refresh_noop(self) -> bool:
        """True when a forced refresh finds nothing to re-index (for benchmarks and tests)."""
        return await asyncio.to_thread(self.index.refresh) == 0

    async def refresh(self) -> int:
        async with self._refresh_lock:
            before = self.index.warnings
            try:
                return await asyncio.to_thread(self.index.refresh)
            finally:
                self._last_refresh = time.monotonic()
                self._log_new_warnings(before)

    def _log_new_warnings(self, before: dict[str, str]) -> None:
        """A file skipped by a refresh after start is logged once (``prepare`` returns the
        warnings at start, which the front end shows)."""
        for rel, text in self.index.warnings.items():
            if before.get(rel) != text:
                log.warning("source %s: %s", self.name, text)

    async def document_state(self, location: str, principals: frozenset[str] | None) -> str | None:
        """The document read exactly as the index would read it (inside the folder, no
        links, no hidden files, fail-closed front matter): "" when it is closed or hidden."""
        rel = location.split("#", 1)[0]

        def read() -> str:
            try:
                raw, _mtime = read_document(self.index.folder, rel)
                readers, _meta, _body = read_readers(raw)
            except DocumentError:
                return ""
            if principals is not None and "*" not in readers and not principals & set(readers):
                return ""
            return hashlib.sha256(raw).hexdigest()

        return await asyncio.to_thread(read)

    async def _refresh(self, *, force: bool = False) -> None:
        if not force and not self._refresh_due():
            return
        async with self._refresh_lock:
            if not force and not self._refresh_due():
                return
            before = self.index.warnings
            try:
                changed = await asyncio.to_thread(self.index.refresh)
            finally:
                self._last_refresh = time.monotonic()
                if not force:
                    self._log_new_warnings(before)
            if changed:
                log.info("re-indexed %d file(s) of %s", changed, self.name)

    def _refresh_due(self) -> bool:
        return time.monotonic() - self._last_refresh >= self.context.refresh_interval_s

    def _refresh_in_background(self) -> None:
        """Scanning a large folder takes a while: searches use the current index meanwhile."""
        if self._refresh_task is not None and not self._refresh_task.done():
            return
        self._refresh_task = asyncio.create_task(self._refresh_quietly())

    async def _refresh_quietly(self) -> None:
        try:
            await self._refresh()
        except Exception as exc:  # reported by the next search or prepare, never lost silently
            log.warning("refreshing %s failed: %s", self.name, exc)

    async def _search(self, *, query: str, principals: frozenset[str], k: int) -> list[Passage]:
        if self.context.refresh_interval_s <= 0 or self._last_refresh == 0.0:
            await self._refresh()
        elif self._refresh_due():
            self._refresh_in_background()
        rows = await asyncio.to_thread(self.index.search, query, principals, k)
        passages = []
        for r in rows:
            with contextlib.suppress(IndexError, KeyError):
                passages.append(
                    Passage(
                        source=self.name,
                        title=r["title"][0],
                        uri=r["uri"][0],
                        text=r["body"][0],
                        score=float(r["score"]),
                        relevance=float(r["score"]),
                        readers=tuple(r["readers"]),
                        location=r["location"][0],
                        updated=r["updated"][0],
                        section=(r.get("section") or [""])[0] or None,
                        data_class=self.source.data_class,
                    )
                )
        return passages
