"""Versioned prompt templates: ``prompts/<name>/v<N>.yaml``.

Templates are data. Rendering replaces ``{name}`` placeholders with values and nothing else:
no attribute access, no expressions, no template engine that could execute code. Values are
inserted once, so text inside a value (a passage, a question) is never itself expanded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from bot import PACKAGE_ROOT
from bot.core.types import Passage, Turn
from bot.errors import ConfigError

PROMPTS_DIR = PACKAGE_ROOT / "prompts"
PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
REQUIRED = ("name", "version", "system", "user", "passage")
# Markers the prompt uses to delimit its parts; removed from untrusted text so that a
# document or a question cannot close a section early and pose as another part.
MARKERS = re.compile(r"</?\s*(passages|history|question)\s*>", re.IGNORECASE)
CITATION_LINE = re.compile(r"^\s*\[(\d+)\]", re.MULTILINE)


def fill(template: str, values: dict[str, str]) -> str:
    return PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def clean(text: str) -> str:
    text = MARKERS.sub(" ", text)
    return CITATION_LINE.sub(lambda m: f"({m.group(1)})", text)


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    version: str
    system: str
    user: str
    passage: str
    no_passages: str = ""
    no_history: str = ""
    history_turn: str = "Q: {question}\nA: {answer}\n"

    def render(
        self,
        *,
        question: str,
        passages: list[Passage],
        history: tuple[Turn, ...] = (),
        workspace: str = "the company",
    ) -> tuple[str, str]:
        """The system and user messages for a model."""
        blocks = [
            fill(
                self.passage,
                {
                    "n": str(i),
                    "source": p.source,
                    "title": clean(p.title),
                    "section": f" — {clean(p.section)}" if p.section else "",
                    "updated": f" (updated {clean(p.updated)})" if p.updated else "",
                    "text": clean(p.text),
                },
            ).strip()
            for i, p in enumerate(passages, 1)
        ]
        turns = [
            fill(
                self.history_turn, {"question": clean(t.question), "answer": clean(t.answer)}
            ).strip()
            for t in history
        ]
        user = fill(
            self.user,
            {
                "passages": "\n\n".join(blocks) or self.no_passages,
                "history": "\n\n".join(turns) or self.no_history,
                "question": clean(question),
            },
        )
        return fill(self.system, {"workspace": workspace}).strip(), user.strip()


def _version_key(path: Path) -> int:
    digits = path.stem.lstrip("v")
    return int(digits) if digits.isdigit() else -1


@lru_cache(maxsize=32)
def load_prompt(name: str, version: str | None = None, root: Path = PROMPTS_DIR) -> PromptTemplate:
    """The given version, or the latest released one."""
    folder = root / name
    files = sorted(folder.glob("v*.yaml"), key=_version_key)
    if version is not None:
        files = [f for f in files if f.stem == f"v{version}"]
    if not files:
        raise ConfigError(f"prompt {name!r} version {version or 'latest'} not found in {folder}")
    path = files[-1]
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"prompt file {path} cannot be read: {exc}") from None
    if not isinstance(data, dict) or any(k not in data for k in REQUIRED):
        raise ConfigError(f"prompt file {path} must define {', '.join(REQUIRED)}")
    fields = PromptTemplate.__dataclass_fields__
    return PromptTemplate(**{k: str(v) for k, v in data.items() if k in fields})


@lru_cache(maxsize=4)
def continuation_prompt(version: str | None = None, root: Path = PROMPTS_DIR) -> str:
    """The instruction that asks a model to continue a partial answer
    (``prompts/continue/v<N>.yaml``), sent after the answer prompt and the partial text."""
    folder = root / "continue"
    files = sorted(folder.glob("v*.yaml"), key=_version_key)
    if version is not None:
        files = [f for f in files if f.stem == f"v{version}"]
    if not files:
        raise ConfigError(f"prompt 'continue' version {version or 'latest'} not found in {folder}")
    try:
        data = yaml.safe_load(files[-1].read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"prompt file {files[-1]} cannot be read: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("instruction"), str):
        raise ConfigError(f"prompt file {files[-1]} must define instruction")
    return data["instruction"].strip()
