"""``app.py report``: numbers checked against a seeded store with known values."""

from __future__ import annotations

import csv
import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import update

from bot.core.labels import Labels
from bot.core.types import Attempt, ExchangeResult
from bot.store import repo
from bot.store.db import Store
from bot.store.models import Exchange
from tests.conftest import Workspace, doc_text

NOW = datetime.now(UTC)


def seed(db_url: str) -> None:
    """Six exchanges in the last week, one older; votes with known outcomes.

    e1 answered (handbook; offline; 100/400 ms; 2 up)          day -1, #general
    e2 answered (runbooks; primary after fallback; 300/900 ms; 1 down "outdated — old")
    e3 no_answer (offline; 50/100 ms; 1 down, 1 up)
    e4 refused (rate_limited; 5/5 ms)
    e5 answered (handbook + runbooks; primary; 200/600 ms; cost 0.02; 1 up), withheld hr
    e6 failed (no model; 10/3000 ms)
    e0 answered 30 days ago: outside the period
    """
    spec = [
        (
            "e1",
            1,
            "eve@x.test",
            "general",
            "answered",
            "offline",
            ["offline"],
            ["handbook"],
            0.0,
            100,
            400,
            [],
            None,
        ),
        (
            "e2",
            2,
            "sam@x.test",
            "general",
            "answered",
            "primary",
            ["fast", "primary"],
            ["runbooks"],
            0.01,
            300,
            900,
            [],
            None,
        ),
        (
            "e3",
            2,
            "eve@x.test",
            None,
            "no_answer",
            "offline",
            ["offline"],
            [],
            0.0,
            50,
            100,
            [],
            None,
        ),
        ("e4", 3, "maya@x.test", None, "refused", None, [], [], 0.0, 5, 5, [], "rate_limited"),
        (
            "e5",
            3,
            "hana@x.test",
            "ops",
            "answered",
            "primary",
            ["primary"],
            ["handbook", "runbooks"],
            0.02,
            200,
            600,
            ["hr"],
            None,
        ),
        (
            "e6",
            4,
            "eve@x.test",
            None,
            "failed",
            None,
            ["primary"],
            [],
            0.0,
            10,
            3000,
            [],
            "timeout",
        ),
        (
            "e0",
            30,
            "old@x.test",
            None,
            "answered",
            "offline",
            ["offline"],
            ["handbook"],
            9.0,
            1,
            1,
            [],
            None,
        ),
    ]
    store = Store.open(db_url)
    try:
        for (
            eid,
            days_ago,
            asker,
            channel,
            outcome,
            model,
            tried,
            sources,
            cost,
            ttft,
            total,
            withheld,
            err,
        ) in spec:
            result = ExchangeResult(
                exchange_id=eid,
                asker=asker,
                question=f"question {eid}",
                answer=f"answer {eid}",
                outcome=outcome,
                model=model,
                models_tried=tried,  # type: ignore[arg-type]
                attempts=[Attempt(model=m) for m in tried],
                sources=[{"source": s, "title": s, "uri": f"{s}.md"} for s in sources],
                sources_withheld=withheld,
                cost_usd=cost,
                ttft_ms=ttft,
                total_ms=total,
                channel=channel,
                error=err,
                prompt_name="answer",
                prompt_version="1",
            )
            with store.session() as s:
                repo.record_exchange(s, result)
                s.execute(
                    update(Exchange)
                    .where(Exchange.id == eid)
                    .values(created_at=NOW - timedelta(days=days_ago, hours=1))
                )
        votes = [
            ("e1", "a@x.test", 1, None, None),
            ("e1", "b@x.test", 1, None, None),
            ("e2", "a@x.test", -1, "old", "outdated"),
            ("e3", "a@x.test", -1, None, None),
            ("e3", "b@x.test", 1, None, None),
            ("e5", "c@x.test", 1, None, None),
            ("e0", "a@x.test", -1, "ancient", None),
        ]
        for eid, voter, vote, reason, category in votes:
            with store.session() as s:
                repo.set_vote(
                    s, exchange_id=eid, voter=voter, vote=vote, reason=reason, category=category
                )
    finally:
        store.close()


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_report_numbers_files_and_chart(cli, db_url: str, tmp_path: Path) -> None:
    seed(db_url)
    out = tmp_path / "rep"
    r = cli("report", "--days", "7", "--out", str(out))
    assert r.code == 0, r.err
    assert "6 questions from 4 people" in r.out
    md = (out / "report.md").read_text()
    assert "- Questions: 6" in md and "- Distinct askers: 4" in md
    assert "answered 3, no_answer 1, refused 1, incomplete 0, failed 1" in md
    assert "- Satisfaction: 67% (4 up, 2 down)" in md  # 4 / (4 + 2)
    assert "- Feedback rate: 67%" in md  # e1, e2, e3, e5 of 6
    assert "- Time to first token: p50 50 ms, p95 300 ms" in md  # 5 10 50 100 200 300
    assert "- Total time: p50 400 ms, p95 3,000 ms" in md  # 5 100 400 600 900 3000
    assert "- Fallback rate: 25%" in md  # e2 of e1, e2, e3, e5
    assert "- Cost: $0.0300" in md
    assert "| handbook | 2 | 3 | 0 |" in md and "| runbooks | 2 | 1 | 1 |" in md
    assert "outdated — old" in md and "exchange e2" in md
    assert md.index("exchange e2") < md.index("exchange e3")  # net -1 before net 0
    assert "rate_limited 1" in md and "hr 1" in md
    assert "- general: $0.0100" in md and "- ops: $0.0200" in md
    assert "ancient" not in md
    with (out / "report.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["exchange_id"] for r in rows) == ["e1", "e2", "e3", "e4", "e5", "e6"]
    e3 = next(r for r in rows if r["exchange_id"] == "e3")
    assert (e3["up"], e3["down"], e3["outcome"]) == ("1", "1", "no_answer")
    assert png_size(out / "chart.png") == (1000, 500)


def test_report_as_html_and_for_an_empty_period(cli, db_url: str, tmp_path: Path) -> None:
    r = cli("report", "--days", "1", "--out", str(tmp_path / "h"), "--format", "html")
    assert r.code == 0 and "0 questions" in r.out
    page = (tmp_path / "h" / "report.html").read_text()
    assert page.startswith("<!doctype html>") and "No answer was voted down" in page
    assert "Every question in this period was answered" in page
    assert png_size(tmp_path / "h" / "chart.png") == (1000, 500)
    bad = cli("report", "--days", "0")
    assert bad.code == 2 and "--days" in bad.err


# --- the content-gap list, readers, day labels ---------------------------------------------

HR = Labels.of("confidential", ["role:hr", "source:hr-policies"])
GAPS = [
    # (id, days ago, asker, surface, thread, outcome, question, labels, votes)
    ("g1", 0, "eve@canary.test", "slack", None, "no_answer", "How do I reset my VPN password?"),
    ("g2", 1, "sam@canary.test", "chat", "chat-1", "no_answer", "VPN password reset <b>fails</b>"),
    (
        "g3",
        2,
        "maya@canary.test",
        "chat",
        "chat-1",
        "no_answer",
        "Where is the VPN password reset?",
    ),
    (
        "g4",
        3,
        "eve@canary.test",
        "cli",
        None,
        "no_answer",
        "What is the parking policy at the office?",
    ),
    ("g5", 4, "sam@canary.test", "slack", None, "answered", "Is there office parking for bikes?"),
    (
        "g6",
        5,
        "hana@canary.test",
        "chat",
        "chat-1",
        "no_answer",
        "Salary band review for L4 staff?",
    ),
    ("g7", 6, "eve@canary.test", "slack", None, "answered", "How do I book holidays?"),
]


def seed_gaps(db_url: str) -> None:
    """Unanswered questions in two topics (VPN password: 3, office parking: 2, one of them
    answered but voted down), one whose labels only HR may read, and a well-answered one."""
    store = Store.open(db_url)
    try:
        for eid, days_ago, asker, surface, thread, outcome, question in GAPS:
            result = ExchangeResult(
                exchange_id=eid,
                asker=asker,
                question=question,
                answer="…",
                outcome=outcome,  # type: ignore[arg-type]
                surface=surface,
                channel="C1" if surface == "slack" else None,
                thread=thread,
                prompt_name="answer",
                prompt_version="1",
                labels=HR if eid == "g6" else Labels(),
            )
            with store.session() as s:
                repo.record_exchange(s, result)
                s.execute(
                    update(Exchange)
                    .where(Exchange.id == eid)
                    .values(created_at=NOW - timedelta(days=days_ago))
                )
        for eid, voter, vote in [("g5", "eve@canary.test", -1), ("g7", "sam@canary.test", 1)]:
            with store.session() as s:
                repo.set_vote(s, exchange_id=eid, voter=voter, vote=vote, reason="no bikes")
    finally:
        store.close()


def test_the_content_gap_list_groups_unanswered_questions_by_topic_for_its_readers(
    cli, db_url: str, workspace: Workspace, tmp_path: Path
) -> None:
    seed_gaps(db_url)
    workspace.write(
        "handbook",
        "vpn.md",
        doc_text("Remote access", None, "Connect to the VPN with the WireGuard app and your SSO."),
    )
    r = cli("report", "--days", "7", "--out", str(tmp_path / "o"))
    assert r.code == 0, r.err
    assert "6 not answered in 2 topics" in r.out
    md = (tmp_path / "o" / "report.md").read_text()
    gaps = md[md.index("## Questions Concierge could not answer") : md.index("## Worst-rated")]
    assert "6 questions went unanswered or were voted down (5 with no answer), in 2 topics" in gaps
    vpn, parking = gaps.split("### ")[1:3]
    assert vpn.startswith("vpn password reset — 3 questions from 3 people")
    assert "“How do I reset my VPN password?”" in vpn and "exchange g2" in vpn
    assert "“VPN password reset \\<b\\>fails\\</b\\>”" in vpn  # Markdown shows it as text
    assert "Nearest documents: Remote access (handbook: vpn.md)\n" in vpn
    assert parking.startswith(
        "office parking — 2 questions from 2 people (1 no answer, 1 voted down)"
    )
    assert "Nearest documents: none near this topic: it needs a new document" in parking
    # Terminal conversations are named by surface, never by their per-session thread name.
    assert "terminal chat, exchange g2" in vpn and "terminal (ask), exchange g4" in parking
    assert "chat-1" not in md
    # Written for the owner, who may not read HR: the HR question is counted, never shown.
    assert "Written for olu@canary.test" in md
    assert "Salary" not in md and "1 more question is counted but not shown" in md
    rows = {
        row["exchange_id"]: row for row in csv.DictReader((tmp_path / "o" / "report.csv").open())
    }
    assert "Salary" not in rows["g6"]["question"] and rows["g1"]["question"].startswith("How")
    assert [rows[g]["topic"] for g in ("g1", "g5", "g6", "g7")] == [
        "vpn password reset",
        "office parking",
        "",
        "",
    ]
    # Written for someone in HR, the question is there, in a topic of its own.
    r = cli("report", "--for", "hana@canary.test", "--out", str(tmp_path / "h"))
    hana = (tmp_path / "h" / "report.md").read_text()
    assert "“Salary band review for L4 staff?”" in hana and "counted but not shown" not in hana
    assert "Salary bands (hr-policies: bands.md)" in hana
    assert "(hr-policies: " not in md  # the owner is never pointed at an HR document
    unknown = cli("report", "--for", "nobody@canary.test", "--out", str(tmp_path / "x"))
    assert unknown.code == 2 and "nobody@canary.test" in unknown.err


def test_day_labels_seven_dates_for_seven_days_and_one_day_singular(
    cli, db_url: str, tmp_path: Path
) -> None:
    seed_gaps(db_url)
    r = cli("report", "--days", "7", "--format", "html", "--out", str(tmp_path / "w"))
    assert r.code == 0, r.err
    page = (tmp_path / "w" / "report.html").read_text()
    assert page.count('data-day="') == 7 and "(7 days, UTC)" in page
    assert f'data-day="{NOW:%Y-%m-%d}"' in page
    assert f'data-day="{NOW - timedelta(days=7):%Y-%m-%d}"' not in page
    # A legend with each series' total over the period, and vote counts.
    for name in ("Questions (7)", "Not answered (6)", "Thumbs up (1)", "Thumbs down (1)"):
        assert f">{name}</text>" in page
    # All text is escaped: a question's markup is shown, never interpreted.
    assert "&lt;b&gt;fails&lt;/b&gt;" in page and "<b>fails" not in page
    assert "<script" not in page and "http://" not in page.replace(
        'xmlns="http://www.w3.org/2000/svg"', ""
    )
    one = cli("report", "--days", "1", "--out", str(tmp_path / "d"))
    assert "in the last 1 day;" in one.out and "1 days" not in one.out
    assert "(1 day, UTC)" in (tmp_path / "d" / "report.md").read_text()


WORDS = [
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
]


def seed_many_topics(db_url: str, n: int = 30) -> None:
    """``n`` unanswered questions with no word in common (``n`` topics), one of them long."""
    store = Store.open(db_url)
    try:
        for i in range(n):
            text = f"{WORDS[i % 13]}{i} {WORDS[(i + 5) % 13]}{i} policy{i}?"
            if i == n - 1:  # the latest: listed first of the topics of one question
                text += " " + "very long question " * 200
            with store.session() as s:
                repo.record_exchange(
                    s,
                    ExchangeResult(
                        exchange_id=f"m{i}",
                        asker=f"p{i}@canary.test",
                        question=text,
                        answer="…",
                        outcome="no_answer",
                        prompt_name="answer",
                        prompt_version="1",
                    ),
                )
    finally:
        store.close()


def test_a_long_gap_list_lists_25_topics_and_sums_up_the_rest(
    cli, db_url: str, tmp_path: Path
) -> None:
    seed_many_topics(db_url)
    r = cli("report", "--out", str(tmp_path / "m"))
    assert r.code == 0 and "30 not answered in 30 topics" in r.out
    md = (tmp_path / "m" / "report.md").read_text()
    assert md.count("\n### ") == 25
    assert "5 more topics with 5 questions (at most 1 each): see the topic column" in md
    assert "very long question very" in md and "very long question " * 20 not in md
