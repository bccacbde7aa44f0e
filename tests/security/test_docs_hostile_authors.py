"""Invariant 9: a document author cannot widen who reads text, nor stall indexing.

The attacks here were reproduced against the ``docs`` connector: symbolic links out of the
source folder, front matter that failed open (empty ``readers``, a misspelled or capitalised
key, a blank line before ``---``), a YAML alias bomb, a quadratic email pattern and a 1 MB
paragraph. Each test drives the public surface (the command line, ``DocsConnector.search``,
``prepare``, ``document_state``) and names the attack it stops.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from bot.config import load_config
from connectors.base import ConnectorContext
from connectors.docs import DocsConnector, DocumentError, parse_document

GUEST = frozenset({"everyone", "user:gus@partner.test"})
HR = frozenset({"everyone", "user:hana@canary.test", "group:people-ops", "role:hr"})


def connector(tmp_path: Path, folder: str = "hb", readers: str = "everyone") -> DocsConnector:
    """A docs source on ``tmp_path/folder`` (readable by ``readers``), refreshed on every search."""
    (tmp_path / folder).mkdir(exist_ok=True)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"sources:\n  - {{name: hb, kind: docs, path: {folder}, readers: {readers}}}\n")
    config = load_config(cfg)
    ctx = ConnectorContext(config=config, index_dir=tmp_path / "index", refresh_interval_s=0)
    return DocsConnector(config.sources[0], ctx)


async def texts(conn: DocsConnector, query: str, principals: frozenset[str]) -> str:
    return " ".join(p.text for p in await conn.search(query=query, principals=principals, k=20))


def ask(cli, question: str, person: str, *extra: str) -> tuple[dict, str]:  # type: ignore[no-untyped-def,type-arg]
    r = cli("ask", question, "--as", person, "--json", *extra)
    assert r.code == 0, r.err
    return json.loads(r.out), r.out + r.err


# --- 1. documents are read only inside their source folder ------------------------------


def test_symlinks_out_of_the_source_folder_are_not_served_to_a_guest(
    cli, workspace, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwd").write_text("The payroll vault root token is CANARY-OUTSIDE-PW1.\n")
    (outside / "plans.md").write_text("The secret merger codename is CANARY-OUTSIDE-DIR.\n")
    (workspace.root / ".env").write_text("The payroll deploy key is CANARY-ENV-KEY9.\n")
    hb = workspace.root / "handbook"
    (hb / "passwd.md").symlink_to(outside / "passwd")
    (hb / "salary.md").symlink_to(workspace.root / "hr" / "bands.md")  # another source's file
    (hb / "env.md").symlink_to(workspace.root / ".env")
    (hb / "vault").symlink_to(outside, target_is_directory=True)
    probes = {
        "What is the payroll vault root token?": "CANARY-OUTSIDE-PW1",
        "What is the L3 salary band in Lisbon?": "CANARY-HR-BANDS",
        "What is the payroll deploy key?": "CANARY-ENV-KEY9",
        "What is the secret merger codename?": "CANARY-OUTSIDE-DIR",
    }
    for question, canary in probes.items():
        _record, seen = ask(cli, question, "gus@partner.test")
        assert canary not in seen, question
    _record, seen = ask(cli, "What is the payroll vault root token?", "eve@canary.test")
    assert "CANARY-OUTSIDE-PW1" not in seen
    r = cli("ask", "What is the payroll deploy key?", "--as", "eve@canary.test", "--json")
    assert "CANARY-ENV-KEY9" not in r.out + r.err
    for name in ("passwd.md", "salary.md", "env.md", "vault"):
        assert name in r.err and "symbolic link" in r.err, (name, r.err)


def test_blank_line_before_front_matter_does_not_publish_to_a_guest(cli, workspace) -> None:
    workspace.write(
        "handbook",
        "bonus.md",
        "\n---\ntitle: Bonus pool\nreaders: [role:hr]\n---\n\n"
        "The 2026 bonus pool for the company is CANARY-BONUS-4E2 in total.\n",
    )
    question = "How big is the 2026 bonus pool for the company?"
    _record, seen = ask(cli, question, "gus@partner.test")
    assert "CANARY-BONUS-4E2" not in seen
    _record, seen = ask(cli, question, "eve@canary.test", "--channel", "general")
    assert "CANARY-BONUS-4E2" not in seen
    record, _seen = ask(cli, question, "hana@canary.test")  # a reader still reads it
    assert "CANARY-BONUS-4E2" in record["answer"]


async def test_hidden_and_linked_files_are_invisible_to_verified_answers_too(
    tmp_path: Path,
) -> None:
    conn = connector(tmp_path)
    hb = tmp_path / "hb"
    (hb / "open.md").write_text("Bicycles may be parked in the courtyard.\n")
    (hb / ".draft.md").write_text("The layoff list is CANARY-HIDDEN-7.\n")
    (hb / "drafts").symlink_to(hb / ".drafts-real", target_is_directory=True)
    (hb / ".drafts-real").mkdir()
    (hb / ".drafts-real" / "x.md").write_text("Reorg plan CANARY-HIDDEN-8.\n")
    (hb / "alias.md").symlink_to(hb / ".draft.md")
    (hb / "bonus.md").write_text("---\nreaders:\n---\nBonus pool CANARY-NULL-READERS.\n")
    warnings = await conn.prepare()
    assert await conn.document_state("open.md", GUEST)
    for location in (".draft.md", "alias.md", "drafts/x.md", "bonus.md", "../hb/open.md"):
        assert await conn.document_state(location, GUEST) == "", location
        assert await conn.document_state(location, None) == "", location
    found = await texts(conn, "layoff list reorg plan bonus pool", HR)
    assert "CANARY" not in found
    assert any("alias.md" in w for w in warnings) and any("drafts" in w for w in warnings)


async def test_oversize_file_is_skipped_with_a_warning(tmp_path: Path) -> None:
    conn = connector(tmp_path)
    body = "The oversize canary is CANARY-BIG-1.\n\n" + ("filler words here " * 9 + "\n\n") * 15_000
    assert 2_100_000 < len(body) < 5_000_000
    (tmp_path / "hb" / "huge.md").write_text(body)
    warnings = await conn.prepare()
    assert any("huge.md" in w and "larger" in w for w in warnings), warnings
    assert "CANARY-BIG-1" not in await texts(conn, "oversize canary", GUEST)


# --- 2. front matter fails closed -------------------------------------------------------

FAIL_OPEN = {
    "readers-null": "---\ntitle: Bonus\nreaders:\n---\n",
    "readers-tilde": "---\nreaders: ~\n---\n",
    "singular-reader": "---\nreader: [role:hr]\n---\n",
    "capitalised": "---\nReaders: [role:hr]\n---\n",
    "upper-case": "---\nREADERS: [role:hr]\n---\n",
    "transposed": "---\nreadres: [role:hr]\n---\n",
    "read-by": "---\nread_by: [role:hr]\n---\n",
    "audience": "---\naudience: [role:hr]\n---\n",
    "cyrillic-e": "---\nr\u0435aders: [role:hr]\n---\n",
    "duplicate-key": "---\nreaders: [role:hr]\nreaders: everyone\n---\n",
    "blank-line-first": "\n---\nreaders: [role:hr]\n---\n",
    "whitespace-first": "  \t\n \n---\nreaders: [role:hr]\n---\n",
    "bom-then-blank": "\ufeff\n---\nreaders: [role:hr]\n---\n",
    "crlf-blank-first": "\r\n---\r\nreaders: [role:hr]\r\n---\r\n",
    "zero-width-first": "\u200b---\nreaders: [role:hr]\n---\n",
    "opener-forgotten": "readers: [role:hr]\n---\n",
    "toml": "+++\nreaders = ['role:hr']\n+++\n",
    "closed-by-dots-early": "---\ntitle: Bonus\n...\nreaders: [role:hr]\n---\n",
    "indented-dashes-in-a-value": "---\ntitle: |\n  ---\nreaders: [role:hr]\n---\n",
    "second-block-after-a-paragraph": "---\ntitle: a\n---\n\nfoo\n\nreaders: [role:hr]\n---\n",
    "comma-string": "---\nreaders: 'role:hr, group:finance'\n---\n",
}


@pytest.mark.parametrize("variant", sorted(FAIL_OPEN))
async def test_front_matter_that_used_to_fail_open_closes_the_document(
    tmp_path: Path, variant: str
) -> None:
    conn = connector(tmp_path)
    text = FAIL_OPEN[variant] + "\nThe 2026 bonus pool is CANARY-BONUS-FM in total.\n"
    (tmp_path / "hb" / "bonus.md").write_bytes(text.encode("utf-8"))
    warnings = await conn.prepare()
    assert "CANARY-BONUS-FM" not in await texts(conn, "2026 bonus pool", GUEST)
    if "CANARY-BONUS-FM" not in await texts(conn, "2026 bonus pool", HR):
        assert any(w.startswith("source hb: bonus.md:") for w in warnings), warnings


def test_front_matter_over_16_kb_closes_the_document(tmp_path: Path) -> None:
    path = tmp_path / "big.md"
    path.write_text("---\ndescription: '" + "x" * 17_000 + "'\n---\nBody text.\n")
    with pytest.raises(DocumentError, match="16 KB"):
        parse_document(path, "big.md")


# --- 3. an author cannot stall indexing -------------------------------------------------


def alias_bomb(levels: int = 7) -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "---\n" + "\n".join(lines) + f"\ntitle: *a{levels - 1}\n---\nBody of the bomb.\n"


async def test_yaml_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    conn = connector(tmp_path)
    (tmp_path / "hb" / "lol.md").write_text(alias_bomb())
    (tmp_path / "hb" / "ok.md").write_text("Bicycles may be parked in the courtyard.\n")
    started = time.perf_counter()
    warnings = await conn.prepare()
    assert time.perf_counter() - started < 1.0
    assert any("lol.md" in w and "alias" in w for w in warnings), warnings
    assert await texts(conn, "bicycles courtyard", GUEST)


def test_a_16_kb_readers_entry_is_validated_quickly(tmp_path: Path) -> None:
    from bot.config import EMAIL_RE, normalise_reader

    hostile = "a@" + "a." * 8000 + ":"
    started = time.perf_counter()
    assert not EMAIL_RE.match(hostile)
    with pytest.raises(ValueError):
        normalise_reader(hostile)
    path = tmp_path / "r.md"
    path.write_text(f"---\nreaders: ['{hostile[:15_000]}']\n---\nBody.\n")
    with pytest.raises(DocumentError):
        parse_document(path, "r.md")
    assert time.perf_counter() - started < 0.2


def test_a_1_mb_paragraph_is_split_into_bounded_passages(tmp_path: Path) -> None:
    path = tmp_path / "wall.md"
    path.write_text("lorem ipsum dolor sit amet " * 40_000 + "\n" + "x" * 200_000 + "\n")
    assert path.stat().st_size > 1_000_000
    started = time.perf_counter()
    doc = parse_document(path, "wall.md")
    assert time.perf_counter() - started < 2.0
    assert 1 < len(doc.chunks) <= 2000
    assert max(len(c.body) for c in doc.chunks) <= 4000


def test_passages_per_file_are_capped(tmp_path: Path) -> None:
    path = tmp_path / "many.md"
    path.write_text("".join(f"## H{i}\n\nline {i}\n\n" for i in range(50_000)))
    doc = parse_document(path, "many.md")
    assert len(doc.chunks) <= 2000


def test_a_read_never_follows_a_link_swapped_in_after_the_scan(tmp_path: Path) -> None:
    """The race: the scan saw a regular file; by the time it is read it is a link."""
    folder = tmp_path / "hb"
    folder.mkdir()
    (tmp_path / "secret.md").write_text("CANARY-RACE-1\n")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "x.md").write_text("CANARY-RACE-2\n")
    (folder / "a.md").symlink_to(tmp_path / "secret.md")
    (folder / "sub").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    for rel in ("a.md", "sub/x.md"):
        with pytest.raises(DocumentError, match="symbolic link"):
            parse_document(folder / rel, rel)
    assert os.path.exists(folder / "sub" / "x.md")


async def test_a_skipped_file_is_reported_on_every_start(tmp_path: Path) -> None:
    """The manifest remembers why a file was skipped: a restart must not silence it."""
    (tmp_path / "hb").mkdir()
    (tmp_path / "hb" / "broken.md").write_text("---\nreaders: [role:hr\n---\nCANARY-BROKEN\n")
    first = await connector(tmp_path).prepare()
    again = await connector(tmp_path).prepare()  # a new process: same index, file unchanged
    assert any("broken.md" in w for w in first)
    assert again == first
