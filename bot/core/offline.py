"""The offline model: a real langchain-core chat model that answers extractively.

It reads the numbered passages and the question out of the rendered prompt, picks the
sentences that best cover the question's content words, and returns them with numbered
citations. When nothing in the passages covers the question it says so plainly. It runs
locally, costs nothing, never fails, and is the zero-configuration default and the last
link of every routing chain.
"""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from bot.core.text import content_words, sentences, stem, words

SECTION_RE = {
    name: re.compile(rf"<{name}>\n?(.*?)\n?</{name}>", re.DOTALL)
    for name in ("passages", "question", "history")
}
HEADER_RE = re.compile(r"^\[(\d+)\] (.*)$", re.MULTILINE)
HISTORY_Q_RE = re.compile(r"^Q: (.*)$", re.MULTILINE)
MARKUP_RE = re.compile(r"^\s*(?:[-*+]|\d+[.)]|#+|>)\s+")
NO_ANSWER = (
    "I couldn't find an answer to that in the sources you can access. "
    "Try rephrasing, or ask the team that owns the topic."
)


@dataclass(frozen=True)
class _Candidate:
    passage: int
    text: str
    terms: frozenset[str]
    order: int


def estimate_tokens(text: str) -> int:
    """About four characters a token for English; never zero for non-empty text."""
    return max(1, math.ceil(len(text) / 4)) if text else 0


def _section(name: str, text: str) -> str:
    m = SECTION_RE[name].search(text)
    return m.group(1).strip() if m else ""


def parse_passages(block: str) -> list[tuple[int, str, str]]:
    """``(number, header, text)`` for each ``[n] header`` block of the prompt."""
    heads = list(HEADER_RE.finditer(block))
    out = []
    for i, h in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(block)
        out.append((int(h.group(1)), h.group(2).strip(), block[h.end() : end].strip()))
    return out


TABLE_SEPARATOR = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def flatten_tables(text: str) -> str:
    """Markdown table rows become sentences ("Level: L3; Minimum: 42,000; …") so that one row
    can be quoted on its own and still make sense."""
    lines = text.split("\n")
    out: list[str] = []
    header: list[str] | None = None
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped.startswith("|"):
            header = None
            out.append(line)
            continue
        if TABLE_SEPARATOR.match(stripped):
            continue
        nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if header is None and TABLE_SEPARATOR.match(nxt):
            header = _cells(stripped)
            continue
        cells = _cells(stripped)
        if header and len(header) == len(cells):
            out.append(
                "; ".join(f"{h}: {c}" for h, c in zip(header, cells, strict=True) if c) + "."
            )
        else:
            out.append(", ".join(c for c in cells if c) + ".")
    return "\n".join(out)


def _stems(text: str) -> frozenset[str]:
    return frozenset(stem(w) for w in content_words(text))


def compose_answer(
    prompt: str, *, max_sentences: int = 3, max_words: int = 110
) -> tuple[str, bool]:
    """The extractive answer for a rendered prompt, and whether it found one."""
    question = _section("question", prompt)
    current = _stems(question)
    if not current:
        return NO_ANSWER, False
    # A short follow-up ("and until when?") leans on the previous question's words.
    asked = HISTORY_Q_RE.findall(_section("history", prompt))
    earlier = _stems(asked[-1]) - current if asked and len(current) <= 3 else frozenset()
    q_terms = current | earlier
    weight = {t: (0.6 if t in earlier else 1.0) for t in q_terms}
    candidates: list[_Candidate] = []
    for number, header, text in parse_passages(_section("passages", prompt)):
        for j, s in enumerate(sentences(flatten_tables(text))):
            s = MARKUP_RE.sub("", s).strip()
            if len(words(s)) < 4:
                continue
            candidates.append(_Candidate(number, s, _stems(s + " " + header), j))
    if not candidates:
        return NO_ANSWER, False
    df: dict[str, int] = {}
    for c in candidates:
        for t in c.terms & q_terms:
            df[t] = df.get(t, 0) + 1
    n = len(candidates)
    idf = {t: weight[t] * math.log(1 + n / (1 + df.get(t, 0))) for t in q_terms}
    total = sum(idf.values())

    def score(c: _Candidate) -> float:
        hit = sum(idf[t] for t in c.terms & q_terms)
        return hit / total - 0.02 * (c.passage - 1) - 0.01 * c.order

    ranked = sorted(candidates, key=score, reverse=True)
    best = ranked[0]
    if score(best) < 0.25 or not (best.terms & q_terms):
        return NO_ANSWER, False
    chosen: list[_Candidate] = []
    covered: set[str] = set()
    used_words = 0
    for c in ranked:
        if len(chosen) >= max_sentences or score(c) < max(0.15, score(best) * 0.45):
            break
        new = (c.terms & q_terms) - covered
        if chosen and not new and len(chosen) >= 2:
            continue
        if any(c.text == x.text for x in chosen):
            continue
        length = len(c.text.split())
        if chosen and used_words + length > max_words:
            continue
        chosen.append(c)
        covered |= c.terms & q_terms
        used_words += length
    chosen.sort(key=lambda c: (c.passage, c.order))
    parts = []
    for c in chosen:
        text = c.text.rstrip()
        if text[-1:] not in ".!?:":
            text += "."
        parts.append(f"{text} [{c.passage}]")
    return " ".join(parts), True


class OfflineChatModel(BaseChatModel):
    """Extractive answers from the passages in the prompt; local, free and always available."""

    chunk_words: int = 4

    @property
    def _llm_type(self) -> str:
        return "concierge-offline"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": "offline-extractive"}

    def _answer(self, messages: list[BaseMessage]) -> tuple[str, bool, UsageMetadata]:
        prompt = "\n".join(str(m.content) for m in messages)
        human = str(messages[-1].content) if messages else ""
        answer, found = compose_answer(human)
        usage = UsageMetadata(
            input_tokens=estimate_tokens(prompt),
            output_tokens=estimate_tokens(answer),
            total_tokens=estimate_tokens(prompt) + estimate_tokens(answer),
        )
        return answer, found, usage

    def _meta(self, found: bool) -> dict[str, Any]:
        return {"model_name": "offline-extractive", "no_answer": not found, "usage_estimated": True}

    def _pieces(self, answer: str) -> list[str]:
        tokens = re.findall(r"\S+\s*", answer)
        return [
            "".join(tokens[i : i + self.chunk_words])
            for i in range(0, len(tokens), self.chunk_words)
        ]

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        answer, found, usage = self._answer(messages)
        msg = AIMessage(content=answer, usage_metadata=usage, response_metadata=self._meta(found))
        return ChatResult(generations=[ChatGeneration(message=msg)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        answer, found, usage = self._answer(messages)
        pieces = self._pieces(answer)
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            chunk = AIMessageChunk(
                content=piece,
                usage_metadata=usage if last else None,
                response_metadata=self._meta(found) if last else {},
            )
            if run_manager:
                run_manager.on_llm_new_token(piece)
            yield ChatGenerationChunk(message=chunk)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        for chunk in self._stream(messages, stop):
            if run_manager:
                await run_manager.on_llm_new_token(str(chunk.message.content))
            yield chunk
