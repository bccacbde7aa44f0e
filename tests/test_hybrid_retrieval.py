"""Hybrid retrieval: BM25 fused with passage vectors, filtered by readers before ranking,
stored beside the index, updated with the documents and versioned by embedding model."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bot.config import Embeddings
from bot.core.embeddings import Embedder, OpenAIEmbedder, local_embedder
from bot.core.sinks import CollectingSink
from bot.core.types import Question
from bot.runtime import build_runtime
from bot.settings import Settings
from connectors.docs import DocsIndex
from tests.standins import openai_api
from tests.standins.openai_api import OpenAIStandIn, hashed_vector

EVERYONE = frozenset({"everyone"})


class CountingEmbedder(Embedder):
    """A real provider (hashed words) that counts the texts it embeds."""

    dim = 64

    def __init__(self, model_id: str = "test:hashed-64") -> None:
        super().__init__()
        self.model_id = model_id
        self.accepted_classes = frozenset(("public", "internal", "confidential"))
        self.embedded: list[str] = []

    def embed_documents(self, texts: list[str]) -> npt.NDArray[np.float32]:
        self.embedded += texts
        rows = np.asarray([hashed_vector(t, self.dim) for t in texts], dtype=np.float32)
        rows /= np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-9)
        return rows


def write(folder: Path, name: str, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")


def test_the_local_model_finds_a_passage_that_shares_no_word_with_the_question(
    tmp_path: Path,
) -> None:
    docs = tmp_path / "docs"
    write(docs, "leave.md", "# Leave\n\nStaff receive twenty-five days of annual leave.\n")
    write(docs, "servers.md", "# Servers\n\nRestart the database replica after failover.\n")
    index = DocsIndex(docs, tmp_path / "idx", embedder=local_embedder())
    index.refresh()
    hits = index.search("how much vacation do employees get", EVERYONE, 1)
    assert hits and hits[0]["title"] == ["Leave"]


def test_dense_search_filters_readers_before_ranking_not_after_a_global_top_k(
    tmp_path: Path,
) -> None:
    docs = tmp_path / "docs"
    for i in range(40):
        write(
            docs,
            f"secret-{i}.md",
            f"---\nreaders: [group:finance]\n---\n# Bonus pool {i}\n\n"
            "The bonus pool for vacation days is confidential.\n",
        )
    write(docs, "open.md", "# Holidays\n\nEveryone gets annual leave and vacation.\n")
    index = DocsIndex(docs, tmp_path / "idx", embedder=local_embedder())
    index.refresh()
    assert index.dense is not None
    vector = local_embedder().query_vector("bonus pool vacation days confidential")
    found = index.dense.search(vector, EVERYONE, 3)
    assert [key for key, _ in found] == ["open.md#0"]
    rows = index.search("bonus pool vacation days confidential", EVERYONE, 5)
    assert [r["title"][0] for r in rows] == ["Holidays"]


def test_vectors_are_updated_only_for_changed_files(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    write(docs, "a.md", "# A\n\nAlpha text about lunches.\n")
    write(docs, "b.md", "# B\n\nBeta text about parking.\n")
    embedder = CountingEmbedder()
    DocsIndex(docs, tmp_path / "idx", embedder=embedder).refresh()
    assert len(embedder.embedded) == 2
    write(docs, "b.md", "# B\n\nBeta text about bicycles, changed.\n")
    again = DocsIndex(docs, tmp_path / "idx", embedder=embedder)
    again.refresh()
    assert len(embedder.embedded) == 3 and "bicycles" in embedder.embedded[-1]
    assert again.dense is not None and sorted(again.dense.keys) == ["a.md#0", "b.md#0"]
    (docs / "a.md").unlink()
    again.refresh()
    assert again.dense.keys == ["b.md#0"]
    assert "A" not in [r["title"][0] for r in again.search("lunches", EVERYONE, 3)]


def test_a_new_embedding_model_rebuilds_the_vectors_and_never_mixes(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    write(docs, "a.md", "# A\n\nAlpha text about lunches.\n")
    DocsIndex(docs, tmp_path / "idx", embedder=CountingEmbedder("test:one")).refresh()
    second = CountingEmbedder("test:two")
    index = DocsIndex(docs, tmp_path / "idx", embedder=second)
    index.refresh()
    assert len(second.embedded) == 1  # nothing changed on disk, yet everything re-embedded
    names = sorted(p.name for p in (tmp_path / "idx").glob("dense-*"))
    assert names == ["dense-test_two.json", "dense-test_two.npy"]


def test_vectors_left_from_a_run_without_them_are_never_reused(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    write(docs, "a.md", "# A\n\nAlpha text about lunches.\n")
    DocsIndex(docs, tmp_path / "idx", embedder=CountingEmbedder()).refresh()
    write(docs, "a.md", "# A\n\nAlpha text about bicycles now.\n")
    DocsIndex(docs, tmp_path / "idx").refresh()  # dense retrieval turned off meanwhile
    again = CountingEmbedder()
    DocsIndex(docs, tmp_path / "idx", embedder=again).refresh()
    assert again.embedded and "bicycles" in again.embedded[-1]


async def test_openai_embeddings_bill_the_question_and_never_receive_confidential_text(
    env: dict[str, str], workspace: Any, monkeypatch: Any
) -> None:
    api = OpenAIStandIn()
    runner = await openai_api.start(api)
    try:
        text = workspace.config.read_text() + (
            f"embeddings: {{provider: openai, model: emb-1, base_url: {api.url},"
            " price: {input: 1000.0}}\n"
        )
        workspace.config.write_text(text)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-stand-in")
        runtime = await build_runtime(Settings())
        try:
            result = await runtime.pipeline.ask(
                Question("Where do I submit expenses?", "fin@canary.test"), CollectingSink()
            )
        finally:
            runtime.close()
    finally:
        await runner.cleanup()
    sent = [t for r in api.embedding_requests for t in r["body"]["input"]]
    assert any("Pleo" in t for t in sent)  # documents were embedded at index time
    # The question (with its expansion, bot/core/synonyms.py) is embedded to search.
    assert any(t.startswith("Where do I submit expenses?") for t in sent)
    assert not any("CANARY-HR" in t or "CANARY-FIN" in t for t in sent)
    assert all(r["auth"] == "Bearer sk-stand-in" for r in api.embedding_requests)
    assert result.outcome == "answered"
    assert result.cost_usd >= 5 * 1000.0 / 1_000_000  # five words of question, billed


async def test_an_embeddings_endpoint_that_fails_leaves_words_only(tmp_path: Path) -> None:
    api = OpenAIStandIn(embeddings_status=503)
    runner = await openai_api.start(api)
    try:
        docs = tmp_path / "docs"
        write(docs, "a.md", "# Lunch\n\nLunch is served at noon in the canteen.\n")
        spec = Embeddings(provider="openai", model="emb-1", base_url=api.url)
        index = DocsIndex(
            docs, tmp_path / "idx", embedder=OpenAIEmbedder(spec, api_key=None, base_url=None)
        )
        await asyncio.to_thread(index.refresh)
        rows = await asyncio.to_thread(index.search, "when is lunch served", EVERYONE, 3)
    finally:
        await runner.cleanup()
    assert [r["title"][0] for r in rows] == ["Lunch"]
    assert index.dense_warning and "HTTP 503" in index.dense_warning
