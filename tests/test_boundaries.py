"""Convention 1: one boundary to Slack. Only bot/slack imports slack_bolt or slack_sdk."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SLACK_IMPORT = re.compile(r"^\s*(from|import)\s+slack_(bolt|sdk)\b", re.MULTILINE)


def test_only_the_slack_adapter_imports_slack() -> None:
    offenders = [
        str(p.relative_to(ROOT))
        for folder in ("bot", "connectors")
        for p in (ROOT / folder).rglob("*.py")
        if "slack" not in p.relative_to(ROOT).parts[:2] and SLACK_IMPORT.search(p.read_text())
    ]
    assert offenders == []
    assert SLACK_IMPORT.search((ROOT / "bot" / "slack" / "app.py").read_text())
