"""The bundled example workspace is the zero-configuration default and answers sensibly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bot.config import load_config
from bot.settings import DEFAULT_CONFIG, Settings

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def zero_config(monkeypatch, tmp_path) -> dict[str, str]:  # type: ignore[no-untyped-def]
    for key in ("CONCIERGE_CONFIG", "DATABASE_URL", "REDIS_URL", "CONCIERGE_DATA_DIR"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in {"CONCIERGE_CONFIG", "DATABASE_URL"}}
    return env


def test_default_config_is_the_example_and_is_valid(zero_config) -> None:
    settings = Settings()
    assert settings.concierge_config == DEFAULT_CONFIG
    config = load_config(settings.concierge_config)
    kinds = {s.name: s for s in config.sources}
    assert kinds["handbook"].is_public
    assert kinds["hr-policies"].data_class == "confidential"
    assert kinds["hr-policies"].review == "required"
    assert any(p.guest for p in config.people) and config.admins and config.owners
    for source in config.sources:
        folder = config.resolve(source.setting("path"))
        docs = list(folder.glob("*.md"))
        assert len(docs) >= 5, source.name
        for doc in docs:
            front = doc.read_text().split("---")[1]
            assert yaml.safe_load(front).get("title"), doc


def ask(env: dict[str, str], cwd: Path, *argv: str) -> dict:  # type: ignore[type-arg]
    r = subprocess.run(
        [sys.executable, str(ROOT / "app.py"), "ask", *argv, "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "warning" not in r.stderr.lower(), r.stderr
    return json.loads(r.stdout)


def test_zero_config_answers_and_permissions_differ_by_person(zero_config, tmp_path) -> None:
    q = "What is the salary band for an L3 engineer in Lisbon?"
    hana = ask(zero_config, tmp_path, q, "--as", "hana@acme.test")
    eve = ask(zero_config, tmp_path, q, "--as", "eve@acme.test")
    assert "hr-policies" in {s["source"] for s in hana["sources"]}
    assert "hr-policies" not in {s["source"] for s in eve["sources"]}
    assert "hr-policies" not in eve["sources_searched"]
    assert (tmp_path / "data" / "concierge.db").exists()
    carry = ask(zero_config, tmp_path, "How many days of paid time off can I carry over?")
    assert carry["outcome"] == "answered"
    assert {s["source"] for s in carry["sources"]} == {"handbook"}
