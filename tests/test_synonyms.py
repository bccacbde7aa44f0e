"""Query expansion (bot/core/synonyms.py): a question in people's own words is searched with
the words documents use, through ``app.py ask --json``; a workspace adds its own groups or
turns the built-in vocabulary off."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.core.synonyms import Synonyms, builtin_groups

SQLITE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

# The test workspace's expenses page says "Pleo"; nobody would guess this word for it.
IN_HOUSE = "When is a quibbletab due?"


def ask(cli: Any, text: str) -> dict[str, Any]:
    result = cli("ask", text, "--as", "eve@canary.test", "--json")
    assert result.code == 0, result.err
    return json.loads(result.out)  # type: ignore[no-any-return]


@SQLITE
def test_a_workspace_group_finds_what_its_own_word_names(workspace: Any, cli: Any) -> None:
    assert ask(cli, IN_HOUSE)["outcome"] == "no_answer"
    text = workspace.config.read_text()
    workspace.config.write_text(
        text.replace(
            "limits:", "retrieval: {synonyms: [[quibbletab, expense, expenses]]}\nlimits:", 1
        )
    )
    answer = ask(cli, IN_HOUSE)
    assert answer["outcome"] == "answered" and "Pleo" in answer["answer"]


def test_expansion_matches_whole_stemmed_phrases_only() -> None:
    syn = Synonyms([["work from home", "wfh", "remote work"], ["pc", "laptop"]])
    assert set(syn.expand("Can I WFH on Fridays?").split()) == {"work", "from", "home", "remote"}
    assert "work from home" in syn.expand("is remote work allowed")
    assert syn.expand("what is ticket pcs-1234 about") == ""  # never inside another word
    assert syn.expand("nothing related here") == ""


@SQLITE
def test_the_builtin_vocabulary_loads_and_can_be_turned_off(workspace: Any, cli: Any) -> None:
    groups = builtin_groups()
    assert len(groups) >= 30 and all(len(g) >= 2 for g in groups)
    text = workspace.config.read_text()
    workspace.config.write_text(
        text.replace("limits:", "retrieval: {builtin_synonyms: false}\nlimits:", 1)
    )
    assert ask(cli, "Where do I submit expenses?")["outcome"] == "answered"
