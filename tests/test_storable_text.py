"""Text that one of the databases cannot store (NUL for PostgreSQL, a lone surrogate for
SQLite and UTF-8) is made storable at the store boundary: the question is answered and
recorded on both, and the answer the person saw is unchanged."""

from __future__ import annotations

import json

from sqlalchemy import select

from bot.store.db import Store
from bot.store.models import Exchange


def test_nul_and_lone_surrogate_in_a_question_are_recorded_on_both_databases(
    cli, db_url: str
) -> None:
    question = "Where do I submit expenses?\x00 and \ud800 receipts \udcff"
    r = cli("ask", question, "--as", "eve@canary.test", "--json")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert data["outcome"] == "answered" and "Pleo" in data["answer"]
    store = Store.open(db_url)
    try:
        with store.session() as s:
            (row,) = s.scalars(select(Exchange))
    finally:
        store.close()
    assert row.id == data["exchange_id"] and row.outcome == "answered"
    assert row.question == "Where do I submit expenses?\ufffd and \ufffd receipts \ufffd"
    assert row.answer == data["answer"]
