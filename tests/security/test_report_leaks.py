"""The owners' report never shows a question to a reader who may not read it.

A question that went unanswered carries the labels of what its answer was made from (the
nearest documents it was pointed at included). Owners get no read access by being owners, so
the report (Markdown, HTML, CSV, and the Slack DM: tests/test_slack_access.py) shows such a
question, its vote reasons, a topic named from its words and documents found from them only
when every reader may read them; otherwise it is counted. Unknown labels (a record from before
labels existed) count as unreadable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import update

from bot.core.labels import Labels
from bot.core.types import ExchangeResult
from bot.store import repo
from bot.store.db import Store
from bot.store.models import Exchange

NOW = datetime.now(UTC)
SECRET_WORDS = ("Lisbon", "bands", "L3", "payroll", "CANARY")


def record(db_url: str, eid: str, question: str, labels: Labels | None) -> None:
    store = Store.open(db_url)
    try:
        with store.session() as s:
            repo.record_exchange(
                s,
                ExchangeResult(
                    exchange_id=eid,
                    asker="hana@canary.test",
                    question=question,
                    answer="…",
                    outcome="no_answer",
                    surface="chat",
                    thread="chat-1",
                    prompt_name="answer",
                    prompt_version="1",
                    labels=labels or Labels(),
                ),
            )
            values: dict[str, object] = {"created_at": NOW - timedelta(hours=1)}
            if labels is None:
                values["labels"] = None  # recorded before labels existed
            s.execute(update(Exchange).where(Exchange.id == eid).values(**values))
            repo.set_vote(
                s, exchange_id=eid, voter="hana@canary.test", vote=-1, reason="Lisbon bands wrong"
            )
    finally:
        store.close()


def test_questions_an_owner_may_not_read_are_counted_never_shown(
    cli, db_url: str, tmp_path: Path
) -> None:
    hr = Labels.of("confidential", ["role:hr", "source:hr-policies"])
    record(db_url, "h1", "What is the L3 salary band in Lisbon (bands for payroll)?", hr)
    record(db_url, "h2", "Lisbon L3 bands again, payroll asks", None)
    seen = ""
    for fmt in ("md", "html"):
        out = tmp_path / fmt
        r = cli("report", "--format", fmt, "--out", str(out))
        assert r.code == 0, r.err
        seen += r.out + "".join(f.read_text() for f in out.iterdir() if f.suffix != ".png")
    assert "2 more questions are counted but not shown" in seen
    for word in SECRET_WORDS:  # not in a question, a reason, a topic or a document found
        assert word not in seen, word
    # Someone in HR reads the first; the one with unknown labels stays hidden from everyone.
    r = cli("report", "--for", "hana@canary.test", "--out", str(tmp_path / "hana"))
    hana = (tmp_path / "hana" / "report.md").read_text()
    assert "L3 salary band in Lisbon" in hana and "Salary bands (hr-policies: bands.md)" in hana
    assert "Lisbon L3 bands again" not in hana and "1 more question is counted" in hana
    # Written for two readers, it shows only what both may read.
    r = cli("report", "--for", "hana@canary.test", "--for", "olu@canary.test", "--out", "both")
    assert r.code == 0 and "Lisbon" not in (Path("both") / "report.md").read_text()
