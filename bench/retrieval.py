"""Retrieval benchmark: 100,000 generated passages, permission-filtered hybrid queries
(BM25 and, with ``--dense local``, the default, passage vectors of the local embedding model).

Builds a docs folder of generated Markdown files (front matter with readers on a share of
them), indexes it through the real docs connector, then times queries through
``Connector.search`` (access check, index query with the readers filter, ACL re-check,
thread hop) for an asker holding a few groups.

    .venv/bin/python -m bench.retrieval [--passages 100000] [--queries 2000]
        [--dense off|local] [--dims 128]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from bot.config import WorkspaceConfig
from bot.core.embeddings import local_embedder
from connectors.base import ConnectorContext
from connectors.docs import DocsConnector

SYLLABLES = [
    "ka",
    "lo",
    "mi",
    "su",
    "te",
    "ra",
    "no",
    "vi",
    "pe",
    "do",
    "ga",
    "ri",
    "mu",
    "se",
    "ta",
    "ne",
    "lu",
    "fo",
    "ba",
    "ki",
]


def vocabulary(n: int, rng: random.Random) -> list[str]:
    words: set[str] = set()
    while len(words) < n:
        words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))))
    return sorted(words)


def zipf_sampler(words: list[str], rng: random.Random):  # type: ignore[no-untyped-def]
    cumulative = list(itertools.accumulate(1 / (i + 1) for i in range(len(words))))
    return lambda k: rng.choices(words, cum_weights=cumulative, k=k)


def generate(folder: Path, passages: int, per_file: int, rng: random.Random) -> None:
    words = vocabulary(20_000, rng)
    sample = zipf_sampler(words, rng)
    groups = [f"group:team{i}" for i in range(20)]
    for f in range(passages // per_file):
        front = "---\ntitle: Document " + str(f) + "\n"
        roll = rng.random()
        if roll < 0.2:
            front += f"readers: [{rng.choice(groups)}]\n"
        elif roll < 0.25:
            front += f"readers: [person{f}@bench.test]\n"
        front += "---\n"
        sections = []
        for s in range(per_file):
            body = " ".join(sample(rng.randint(60, 110))) + "."
            sections.append(f"## Section {s} {' '.join(sample(2))}\n\n{body}\n")
        (folder / f"doc{f:05d}.md").write_text(front + "\n".join(sections))


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--passages", type=int, default=100_000)
    ap.add_argument("--per-file", type=int, default=20)
    ap.add_argument("--queries", type=int, default=2_000)
    ap.add_argument("--k", type=int, default=6)
    ap.add_argument("--dense", choices=("off", "local"), default="local")
    ap.add_argument("--dims", type=int, default=128, help="local model size: 64, 128 or 256")
    ap.add_argument(
        "--expanded",
        type=int,
        default=0,
        metavar="N",
        help="add N words to each query, as the vocabulary's expansion does (6 is the median "
        "on bench/quality; 26 the most)",
    )
    args = ap.parse_args()
    rng = random.Random(42)
    tmp = Path(tempfile.mkdtemp(prefix="concierge-bench-"))
    try:
        docs = tmp / "docs"
        docs.mkdir()
        t0 = time.perf_counter()
        generate(docs, args.passages, args.per_file, rng)
        gen_s = time.perf_counter() - t0
        config = WorkspaceConfig.model_validate(
            {
                "sources": [
                    {"name": "bench", "kind": "docs", "path": str(docs), "readers": "everyone"}
                ],
                "path": tmp / "c.yaml",
            }
        )
        embedder = local_embedder(args.dims) if args.dense == "local" else None
        ctx = ConnectorContext(
            config=config, index_dir=tmp / "index", refresh_interval_s=3600, embedder=embedder
        )
        conn = DocsConnector(config.sources[0], ctx)
        rss_before = rss_mb()
        t0 = time.perf_counter()
        warnings = await conn.prepare()
        build_s = time.perf_counter() - t0
        assert not warnings, warnings
        size_mb = sum(p.stat().st_size for p in (tmp / "index").rglob("*") if p.is_file()) / 1e6
        t0 = time.perf_counter()
        assert await conn.index_refresh_noop()
        noop_ms = (time.perf_counter() - t0) * 1000
        principals = frozenset({"everyone", "user:eve@bench.test", "group:team3", "group:team7"})
        words = vocabulary(20_000, random.Random(42))
        sample = zipf_sampler(words[:5000], rng)
        queries = [" ".join(sample(rng.randint(2, 6) + args.expanded)) for _ in range(args.queries)]
        for q in queries[:50]:  # warm up
            await conn.search(query=q, principals=principals, k=args.k)
        times = []
        words_only: list[float] = []  # the same queries, words alone, interleaved (same load)
        dense = conn.index.dense
        hits = 0
        for q in queries:
            t = time.perf_counter()
            found = await conn.search(query=q, principals=principals, k=args.k)
            times.append((time.perf_counter() - t) * 1000)
            hits += len(found)
            if dense is not None:
                conn.index.dense = None
                t = time.perf_counter()
                await conn.search(query=q, principals=principals, k=args.k)
                words_only.append((time.perf_counter() - t) * 1000)
                conn.index.dense = dense
        times.sort()
        words_only.sort()
        pct = lambda p: times[min(len(times) - 1, int(p / 100 * len(times)))]  # noqa: E731
        print(
            f"passages indexed        {args.passages:,} in {args.passages // args.per_file:,} files"
        )
        print(f"files generated in      {gen_s:.1f} s")
        print(
            f"index build             {build_s:.1f} s ({args.passages / build_s:,.0f} passages/s)"
        )
        dense_mb = sum(p.stat().st_size for p in (tmp / "index").rglob("dense-*")) / 1e6
        print(f"dense retrieval         {args.dense} ({args.dims} dimensions)")
        print(f"index size on disk      {size_mb:.0f} MB (passage vectors {dense_mb:.0f} MB)")
        print(f"max RSS                 {rss_mb():.0f} MB (before build {rss_before:.0f} MB)")
        print(f"no-change refresh scan  {noop_ms:.0f} ms")
        print(f"queries                 {len(times):,}, {hits / len(times):.1f} hits each")
        print(
            f"search latency ms       p50 {statistics.median(times):.2f}  p95 {pct(95):.2f}  "
            f"p99 {pct(99):.2f}  max {times[-1]:.2f}"
        )
        if words_only:
            w = lambda p: words_only[min(len(words_only) - 1, int(p / 100 * len(words_only)))]  # noqa: E731
            print(
                f"same queries, words only p50 {statistics.median(words_only):.2f}  "
                f"p95 {w(95):.2f}  p99 {w(99):.2f}  (interleaved: the same machine load)"
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
