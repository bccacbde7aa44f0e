"""The docs connector: front matter, chunking, citations and incremental re-indexing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bot.config import load_config
from connectors.base import ConnectorContext, SourceUnavailable
from connectors.docs import DocsConnector, DocsIndex, parse_document

EVERYONE = frozenset({"everyone"})


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_parse_front_matter_title_date_and_locations(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "travel.md",
        "---\ntitle: Travel\nupdated: 2026-03-01\n---\n"
        "Intro text about travel booking.\n\n## Flights\n\nEconomy under six hours.\n\n"
        "## Hotels\n\nHotel caps per city apply.\n",
    )
    doc = parse_document(p, "travel.md")
    assert doc.title == "Travel" and doc.updated == "2026-03-01" and doc.readers == ("*",)
    assert [c.location for c in doc.chunks] == [
        "travel.md",
        "travel.md#flights",
        "travel.md#hotels",
    ]
    assert doc.chunks[1].section == "Flights"


def test_title_falls_back_to_heading_then_file_name(tmp_path: Path) -> None:
    assert (
        parse_document(
            write(tmp_path, "a.md", "# Onboarding\n\nWelcome aboard, new people.\n"), "a.md"
        ).title
        == "Onboarding"
    )
    assert (
        parse_document(write(tmp_path, "notes.txt", "Plain text notes here.\n"), "notes.txt").title
        == "notes"
    )


def test_long_sections_are_split_into_passages(tmp_path: Path) -> None:
    body = "\n\n".join(f"Paragraph {i} " + "word " * 60 for i in range(10))
    doc = parse_document(write(tmp_path, "long.md", body), "long.md")
    assert len(doc.chunks) >= 4
    assert all(len(c.body.split()) <= 250 for c in doc.chunks)


def test_incremental_reindex(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    write(folder, "a.md", "Alpha policy covers bicycles.\n")
    write(folder, "b.md", "Beta policy covers scooters.\n")
    index = DocsIndex(folder, tmp_path / "idx")
    assert index.refresh() == 2
    assert index.refresh() == 0  # nothing changed, nothing re-read
    assert index.search("bicycles", EVERYONE, 5)
    path = write(folder, "a.md", "Alpha policy now covers unicycles.\n")
    os.utime(path, ns=(path.stat().st_mtime_ns + 10**9,) * 2)
    assert index.refresh() == 1
    assert not index.search("bicycles", EVERYONE, 5)
    assert index.search("unicycles", EVERYONE, 5)
    (folder / "b.md").unlink()
    assert index.refresh() == 1
    assert not index.search("scooters", EVERYONE, 5)
    # A new process (a new DocsIndex on the same folder) reuses the index as it is.
    again = DocsIndex(folder, tmp_path / "idx")
    assert again.refresh() == 0 and again.search("unicycles", EVERYONE, 5)


def test_readers_filter_happens_in_the_index(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    write(folder, "open.md", "Rotation schedule for the pager is weekly.\n")
    write(folder, "sre.md", "---\nreaders: [group:sre, ada@x.test]\n---\nPager secrets rotation.\n")
    index = DocsIndex(folder, tmp_path / "idx")
    index.refresh()
    assert {r["path"][0] for r in index.search("pager rotation", EVERYONE, 5)} == {"open.md"}
    sre = index.search("pager rotation", frozenset({"everyone", "group:sre"}), 5)
    assert {r["path"][0] for r in sre} == {"open.md", "sre.md"}
    ada = index.search("pager rotation", frozenset({"everyone", "user:ada@x.test"}), 5)
    assert {r["path"][0] for r in ada} == {"open.md", "sre.md"}


def test_missing_folder_is_unavailable(tmp_path: Path) -> None:
    index = DocsIndex(tmp_path / "nope", tmp_path / "idx")
    with pytest.raises(SourceUnavailable, match="does not exist"):
        index.refresh()


async def test_connector_refreshes_on_its_interval_and_cites(tmp_path: Path) -> None:
    write(
        tmp_path / "hb",
        "pto.md",
        "---\ntitle: PTO\nurl: https://wiki.x.test/pto\n---\n"
        "Carry over five days of holiday until March.\n",
    )
    cfg_path = write(
        tmp_path,
        "c.yaml",
        "sources:\n  - {name: hb, kind: docs, path: hb, "
        "readers: everyone, base_url: https://files.x.test}\n",
    )
    config = load_config(cfg_path)
    ctx = ConnectorContext(config=config, index_dir=tmp_path / "index", refresh_interval_s=0)
    conn = DocsConnector(config.sources[0], ctx)
    assert await conn.prepare() == []
    (hit,) = await conn.search(query="carry over holiday", principals=EVERYONE, k=3)
    assert hit.uri == "https://wiki.x.test/pto" and hit.title == "PTO" and hit.source == "hb"
    write(tmp_path / "hb", "new.md", "Sabbaticals are available after five years.\n")
    (new,) = await conn.search(query="sabbaticals", principals=EVERYONE, k=3)
    assert new.uri == "https://files.x.test/new.md"


async def test_background_refresh_does_not_hold_up_searches(tmp_path: Path) -> None:
    import asyncio

    write(tmp_path / "hb", "a.md", "Bicycles may be parked in the courtyard.\n")
    cfg = write(
        tmp_path, "c.yaml", "sources:\n  - {name: hb, kind: docs, path: hb, readers: everyone}\n"
    )
    config = load_config(cfg)
    ctx = ConnectorContext(config=config, index_dir=tmp_path / "index", refresh_interval_s=0.05)
    conn = DocsConnector(config.sources[0], ctx)
    await conn.prepare()
    write(tmp_path / "hb", "b.md", "Scooters are charged in the basement.\n")
    await asyncio.sleep(0.06)
    await conn.search(query="scooters", principals=EVERYONE, k=3)  # starts the refresh
    for _ in range(100):
        if await conn.search(query="scooters", principals=EVERYONE, k=3):
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("the change was never picked up")
