"""Redaction: personal data and secrets are replaced before a question is stored, and before
a prompt reaches a model configured with ``redact: true`` (DESIGN.md invariant 5).

Recall and precision are measured on a seeded corpus (the same every run) and asserted."""

from __future__ import annotations

import json
import random
import string
import time
from typing import Any

import pytest
from sqlalchemy import select

from bot.core.redaction import Redactor, iban_ok, luhn_ok
from bot.store.db import Store
from bot.store.models import Exchange
from tests.standins import openai_api
from tests.standins.openai_api import OpenAIStandIn

RNG = random.Random(20261202)


def card() -> str:
    while True:
        digits = "4" + "".join(RNG.choice(string.digits) for _ in range(15))
        if luhn_ok(digits):
            sep = RNG.choice(["", " ", "-"])
            return sep.join(digits[i : i + 4] for i in range(0, 16, 4))


def iban() -> str:
    country = RNG.choice(["GB", "DE", "FR", "NL", "PT"])
    bban = "".join(RNG.choice(string.digits) for _ in range(18))
    for check in range(100):
        value = f"{country}{check:02d}{bban}"
        if iban_ok(value):
            return (
                value
                if RNG.random() < 0.5
                else " ".join(value[i : i + 4] for i in range(0, len(value), 4))
            )
    raise AssertionError("no check digits")


def phone() -> str:
    return RNG.choice(
        [
            f"+44 20 {RNG.randint(1000, 9999)} {RNG.randint(1000, 9999)}",
            f"+1 ({RNG.randint(200, 999)}) {RNG.randint(200, 999)}-{RNG.randint(1000, 9999)}",
            f"06 {RNG.randint(10, 99)} {RNG.randint(10, 99)} {RNG.randint(10, 99)} "
            f"{RNG.randint(10, 99)}",
            f"+351 {RNG.randint(910, 969)} {RNG.randint(100, 999)} {RNG.randint(100, 999)}",
            f"0049 30 {RNG.randint(1000000, 9999999)}",
        ]
    )


def word(n: int) -> str:
    return "".join(RNG.choice(string.ascii_letters + string.digits) for _ in range(n))


POSITIVES = {
    "email": lambda: f"{word(6).lower()}.{word(4).lower()}@{word(5).lower()}.example.com",
    "phone": phone,
    "card": card,
    "iban": iban,
    "secret": lambda: RNG.choice(
        [
            f"xoxb-{RNG.randint(10**11, 10**12)}-{word(24)}",
            f"AKIA{''.join(RNG.choice(string.ascii_uppercase + string.digits) for _ in range(16))}",
            f"sk-proj-{word(40)}",
            f"Bearer {word(40)}",
            f"ghp_{word(36)}",
            f"-----BEGIN PRIVATE KEY-----\n{word(64)}\n-----END PRIVATE KEY-----",
        ]
    ),
}
NEGATIVES = [
    lambda: f"{RNG.randint(2020, 2030)}-{RNG.randint(1, 12):02d}-{RNG.randint(1, 28):02d}",
    lambda: f"{RNG.randint(1, 999)},{RNG.randint(100, 999)} EUR",
    lambda: f"version {RNG.randint(1, 9)}.{RNG.randint(0, 20)}.{RNG.randint(0, 99)}",
    lambda: f"order {RNG.randint(10**6, 10**7)}",
    lambda: f"ticket OPS-{RNG.randint(100, 9999)}",
    lambda: f"{RNG.randint(1, 28)}/{RNG.randint(1, 12)}/{RNG.randint(2020, 2030)}",
    lambda: f"room {RNG.randint(100, 999)}, floor {RNG.randint(1, 9)}",
    lambda: f"{RNG.randint(10, 99)}:{RNG.randint(10, 59)} CET",
    lambda: f"L{RNG.randint(1, 7)} band {RNG.randint(30, 90)},000 to {RNG.randint(91, 150)},000",
    lambda: f"sku {word(8)}",
]


def test_recall_and_precision_on_a_seeded_corpus() -> None:
    redactor = Redactor()
    found: dict[str, int] = {}
    for kind, make in POSITIVES.items():
        hits = 0
        for _ in range(200):
            value = make()
            result = redactor.redact(f"Please check {value} for me.")
            hits += value not in result.text and result.counts.get(kind, 0) >= 1
        found[kind] = hits
    negatives = [make() for make in NEGATIVES for _ in range(100)]
    false = [n for n in negatives if redactor.redact(f"About {n} today.").counts]
    recall = {k: v / 200 for k, v in found.items()}
    precision = 1 - len(false) / len(negatives)
    print(f"redaction recall {recall}, precision on {len(negatives)} negatives {precision:.3f}")
    assert all(r >= 0.97 for r in recall.values()), recall
    assert precision >= 0.99, false[:10]


def test_crafted_input_is_redacted_in_linear_time() -> None:
    redactor = Redactor()
    for text in ("1 " * 100_000, "a@" * 100_000, "-----BEGIN PRIVATE KEY-----" + "x" * 200_000):
        started = time.perf_counter()
        redactor.redact(text)
        assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_a_question_is_stored_redacted_with_counts(cli: Any, env: dict[str, str]) -> None:
    question = "Where do I submit expenses (card 4111 1111 1111 1111, eve.private@gmail.com)?"
    result = cli("ask", question, "--as", "eve@canary.test", "--json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["outcome"] in ("answered", "no_answer")
    assert data["redactions"] == {"card": 1, "email": 1}
    assert "4111" not in result.out and "eve.private" not in result.out
    store = Store.open(env["DATABASE_URL"])
    with store.session() as s:
        row = s.scalars(select(Exchange)).one()
    store.close()
    assert row.question is not None and "[card]" in row.question and "[email]" in row.question
    assert "4111" not in json.dumps([row.question, row.attempts, row.answer])


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_model_marked_redact_receives_only_redacted_text(
    cli: Any, workspace: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-stand-in")
    api = OpenAIStandIn()
    with openai_api.in_thread(api):
        # A deadline far beyond a cold start (client creation, a busy CI machine): this test
        # is about what is sent, not how fast.
        config = openai_api.primary_config(api.url, "first_token_timeout_s: 15").replace(
            "    price:", "    redact: true\n    price:"
        )
        workspace.config.write_text(
            workspace.config.read_text().replace("limits:", config + "limits:")
        )
        token = "xoxb-123456789012-abcdefghijklmnopqrstuvwx"
        result = cli(
            "ask",
            f"Where do I submit expenses? our bot token is {token}, call +44 20 7946 0958",
            "--as",
            "eve@canary.test",
            "--json",
        )
    assert result.code == 0, result.err
    sent = json.dumps([r["body"]["messages"] for r in api.requests])
    assert api.requests, json.loads(result.out)["attempts"]
    assert token not in sent and "7946" not in sent
    assert "[secret]" in sent and "[phone]" in sent
    notes = json.loads(result.out)["attempts"][0]["notes"]
    assert any("redacted before sending" in n for n in notes)
