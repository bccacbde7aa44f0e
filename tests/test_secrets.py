"""Invariant 5: secrets never appear in logs, records or error messages."""

from __future__ import annotations

import logging
from pathlib import Path

from bot.settings import Settings

TOKENS = {
    "SLACK_BOT_TOKEN": "xoxb-1111-SECRET-BOT",
    "SLACK_APP_TOKEN": "xapp-1-SECRET-APP",
    "SLACK_SIGNING_SECRET": "SECRET-SIGNING-abc",
    "OPENAI_API_KEY": "sk-SECRET-OPENAI",
    "ANTHROPIC_API_KEY": "sk-ant-SECRET",
}


def test_settings_never_print_secrets(monkeypatch) -> None:
    for key, value in TOKENS.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    shown = repr(settings) + str(settings) + settings.model_dump_json()
    assert not any(v in shown for v in TOKENS.values())
    assert settings.slack_bot_token is not None
    assert settings.slack_bot_token.get_secret_value() == TOKENS["SLACK_BOT_TOKEN"]


def test_no_secret_in_logs_records_or_errors(cli, env, monkeypatch, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    for key, value in TOKENS.items():
        monkeypatch.setenv(key, value)
    r = cli("ask", "Where do I submit expenses?", "--json")
    assert r.code == 0
    monkeypatch.setenv("DATABASE_URL", "postgresql://bob:SECRET-DB-PW@127.0.0.1:1/x")
    bad = cli("ask", "Where do I submit expenses?")
    assert bad.code == 0  # answered; its record waits in the spool (issue 14)
    refused = cli("access", "list")
    assert refused.code == 1
    spooled = (Path(env["CONCIERGE_DATA_DIR"]) / "spool" / "spool.jsonl").read_text()
    everything = r.out + r.err + bad.out + bad.err + refused.err + spooled + caplog.text
    assert "SECRET" not in everything
