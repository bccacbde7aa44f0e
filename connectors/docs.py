"""The ``docs`` connector: Markdown and plain-text files in a folder.

Files may start with YAML front matter (``title``, ``readers``, ``updated``, ``url``).
``readers`` can only narrow the source's readers. Files are split into passages by heading
and paragraph and indexed with Tantivy (BM25 with block-max WAND, so a query does not score
every passage). The index is derived local data under the data folder, refreshed
incrementally: only files whose size or modification time changed are re-read.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import tantivy
import yaml

from bot.config import normalise_reader
from bot.core.text import content_words, slug
from bot.core.types import Passage
from connectors.base import Connector, ConnectorContext, SourceUnavailable

log = logging.getLogger("concierge.connectors.docs")

SCHEMA_VERSION = 2
SUFFIXES = {".md", ".markdown", ".txt"}
CHUNK_WORDS = 160
MAX_FILE_BYTES = 5_000_000


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


class DocumentError(ValueError):
    """A file that cannot be indexed safely; it is skipped until fixed."""


def split_front_matter(text: str) -> tuple[dict[str, Any], str]:
    if not text.startswith("---"):
        return {}, text
    lines = text.split("\n")
    if lines[0].strip() != "---":
        return {}, text
    for i in range(1, len(lines)):
        if lines[i].strip() in {"---", "..."}:
            raw = "\n".join(lines[1:i])
            try:
                meta = yaml.safe_load(raw) if raw.strip() else {}
            except yaml.YAMLError as exc:
                mark = getattr(exc, "problem_mark", None)
                where = f" (line {mark.line + 2})" if mark else ""
                raise DocumentError(f"front matter is not valid YAML{where}") from None
            if meta is None:
                meta = {}
            if not isinstance(meta, dict):
                raise DocumentError("front matter must be a mapping of keys")
            return meta, "\n".join(lines[i + 1 :])
    raise DocumentError("front matter starts with --- but is never closed")


def _readers(meta: dict[str, Any]) -> tuple[str, ...]:
    value = meta.get("readers")
    if value is None:
        return ("*",)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise DocumentError("readers must be 'everyone' or a non-empty list")
    try:
        tokens = tuple(sorted({normalise_reader(str(v)) for v in value}))
    except ValueError as exc:
        raise DocumentError(f"readers: {exc}") from None
    return ("*",) if "everyone" in tokens else tokens


def chunk_markdown(title: str, body: str, rel: str) -> list[Chunk]:
    """Split by headings, then pack paragraphs into passages of about CHUNK_WORDS words."""
    sections: list[tuple[str, list[str]]] = [("", [])]
    para: list[str] = []

    def flush() -> None:
        if para:
            sections[-1][1].append("\n".join(para).strip())
            para.clear()

    for line in body.split("\n"):
        stripped = line.strip()
        if stripped.startswith("#") and stripped.lstrip("#").startswith(" "):
            flush()
            heading = stripped.lstrip("#").strip()
            if stripped.startswith("# ") and not title:
                title = heading
            sections.append((heading, []))
        elif not stripped:
            flush()
        else:
            para.append(line.rstrip())
    flush()
    chunks: list[Chunk] = []
    for heading, paragraphs in sections:
        buf: list[str] = []
        count = 0
        for p in paragraphs:
            n = len(p.split())
            if buf and count + n > CHUNK_WORDS:
                chunks.append(_chunk(title, heading, buf, rel))
                buf, count = [], 0
            buf.append(p)
            count += n
        if buf:
            chunks.append(_chunk(title, heading, buf, rel))
    return chunks


def _chunk(title: str, heading: str, paragraphs: list[str], rel: str) -> Chunk:
    anchor = f"#{slug(heading)}" if heading else ""
    return Chunk(title=title, section=heading, body="\n\n".join(paragraphs), location=rel + anchor)


def parse_document(path: Path, rel: str, *, base_url: str | None = None) -> ParsedDoc:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DocumentError(f"cannot be read ({exc.strerror})") from None
    if len(raw) > MAX_FILE_BYTES:
        raise DocumentError(f"is larger than {MAX_FILE_BYTES // 1_000_000} MB")
    text = raw.decode("utf-8", errors="replace").replace("\r\n", "\n").lstrip("\ufeff")
    meta, body = split_front_matter(text)
    readers = _readers(meta)
    title = str(meta.get("title") or "").strip()
    updated = meta.get("updated") or meta.get("date")
    if updated is None:
        updated = datetime.fromtimestamp(path.stat().st_mtime, UTC).date().isoformat()
    if path.suffix == ".txt":
        body = "\n\n".join(p for p in body.split("\n\n"))
    chunks = chunk_markdown(title, body, rel)
    title = title or (chunks[0].title if chunks and chunks[0].title else "") or path.stem
    chunks = [Chunk(title, c.section, c.body, c.location) for c in chunks if c.body.strip()]
    url = meta.get("url")
    uri = str(url) if url else (base_url.rstrip("/") + "/" + rel if base_url else rel)
    return ParsedDoc(rel, title, readers, str(updated), uri, tuple(chunks))


class DocsIndex:
    """A Tantivy index of one folder, with a manifest of what was indexed from which file."""

    def __init__(self, folder: Path, index_dir: Path, *, base_url: str | None = None) -> None:
        self.folder = folder
        self.dir = index_dir
        self.base_url = base_url
        self._lock = threading.Lock()
        self._index: tantivy.Index | None = None
        self.warnings: dict[str, str] = {}

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

    def scan(self) -> dict[str, tuple[int, int]]:
        files: dict[str, tuple[int, int]] = {}
        for p in sorted(self.folder.rglob("*")):
            if (
                p.suffix.lower() in SUFFIXES
                and p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(self.folder).parts)
            ):
                st = p.stat()
                files[p.relative_to(self.folder).as_posix()] = (st.st_mtime_ns, st.st_size)
        return files

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
            current = self.scan()
            changed = [r for r, sig in current.items() if known.get(r, {}).get("sig") != list(sig)]
            removed = [r for r in known if r not in current]
            if not changed and not removed:
                return 0
            writer = self._writer(index)
            new_known = {r: v for r, v in known.items() if r in current}
            for rel in removed:
                writer.delete_documents_by_term("path", rel)
                self.warnings.pop(rel, None)
            for rel in changed:
                writer.delete_documents_by_term("path", rel)
                try:
                    doc = parse_document(self.folder / rel, rel, base_url=self.base_url)
                except DocumentError as exc:
                    self.warnings[rel] = f"{rel}: {exc}; the file is skipped until it is fixed"
                    new_known[rel] = {"sig": list(current[rel]), "chunks": 0}
                    continue
                self.warnings.pop(rel, None)
                for c in doc.chunks:
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
                        )
                    )
                new_known[rel] = {"sig": list(current[rel]), "chunks": len(doc.chunks)}
            writer.commit()
            writer.wait_merging_threads()
            index.reload()
            tmp = self.manifest_path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"schema": SCHEMA_VERSION, "files": new_known}))
            tmp.replace(self.manifest_path)
            return len(changed) + len(removed)

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
        if not self.folder.is_dir():
            raise SourceUnavailable(f"folder {self.folder} does not exist")
        index = self._open()
        terms = content_words(query)[:48]
        if not terms:
            return []
        text_q, _errors = index.parse_query_lenient(
            " ".join(terms),
            ["title", "section", "body"],
            field_boosts={"title": 2.0, "section": 1.5},
        )
        acl = tantivy.Query.term_set_query(index.schema, "readers", sorted(principals | {"*"}))
        q = tantivy.Query.boolean_query([(tantivy.Occur.Must, text_q), (tantivy.Occur.Must, acl)])
        searcher = index.searcher()
        hits = searcher.search(q, limit=k, count=False).hits
        out = []
        for score, address in hits:
            d = searcher.doc(address)
            out.append({f: d.get_all(f) for f in d.to_dict()} | {"score": score})
        return out


class DocsConnector(Connector):
    kind = "docs"

    def __init__(self, source: Any, context: ConnectorContext) -> None:
        super().__init__(source, context)
        folder = context.config.resolve(str(source.setting("path", source.name)))
        key = hashlib.sha1(str(folder).encode()).hexdigest()[:10]
        self.index = DocsIndex(
            folder, context.index_dir / f"{source.name}-{key}", base_url=source.setting("base_url")
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
            try:
                return await asyncio.to_thread(self.index.refresh)
            finally:
                self._last_refresh = time.monotonic()

    async def document_state(self, location: str, principals: frozenset[str] | None) -> str | None:
        rel = location.split("#", 1)[0]
        folder = self.index.folder.resolve()
        path = (folder / rel).resolve()
        if folder not in path.parents:
            return ""

        def read() -> str:
            try:
                raw = path.read_bytes()
                meta, _ = split_front_matter(raw.decode("utf-8", errors="replace"))
                readers = _readers(meta)
            except (OSError, DocumentError):
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
            try:
                changed = await asyncio.to_thread(self.index.refresh)
            finally:
                self._last_refresh = time.monotonic()
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
                        readers=tuple(r["readers"]),
                        location=r["location"][0],
                        updated=r["updated"][0],
                        section=(r.get("section") or [""])[0] or None,
                        data_class=self.source.data_class,
                    )
                )
        return passages
