"""Fixtures shared by the adversarial suite (the workspace and app come from tests/conftest.py)."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def eve_in_hr(workspace: Any) -> None:
    """eve reads hr-policies, so her answers from it are held for hana's review (set before
    the ``slack`` fixture starts the app)."""
    text = workspace.config.read_text().replace(
        'hr: {members: ["group:people-ops"]}',
        'hr: {members: ["group:people-ops", eve@canary.test]}',
    )
    assert "eve@canary.test]" in text
    workspace.config.write_text(text)
