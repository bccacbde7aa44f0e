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

from bot.core.query import content_words as meaningful_words
from bot.core.text import content_words, sentences, stem, words

SECTION_RE = {
    name: re.compile(rf"<{name}>\n?(.*?)\n?</{name}>", re.DOTALL)
    for name in ("passages", "question", "history")
}
HEADER_RE = re.compile(r"^\[(\d+)\] (.*)$", re.MULTILINE)
HISTORY_Q_RE = re.compile(r"^Q: (.*)$", re.MULTILINE)
CONTEXT_KEY = "concierge_answer_context"  # HumanMessage.additional_kwargs: the side channel
MARKUP_RE = re.compile(r"^\s*(?:[-*+]|\d+[.)]|#+|>)\s+")
NO_ANSWER = (
    "I couldn't find an answer to that in the sources you can access. "
    "Try rephrasing, or ask the team that owns the topic."
)


# Sentence relevance: the share of the question's (rarity-weighted) words a sentence holds,
# plus SEMANTIC_WEIGHT times how far its embedding similarity to the question rises above
# SEMANTIC_FLOOR (unrelated text sits around 0.1-0.3 with the local model). Below
# MIN_SENTENCE_SCORE there is no answer. Calibrated on bench/quality.py.
SEMANTIC_WEIGHT = 0.7
SEMANTIC_FLOOR = 0.15
MIN_SENTENCE_SCORE = 0.32
# A question word found only in the sentence's heading counts this much: every sentence of a
# section shares its heading, and the one that says the word itself is the likelier answer.
HEADING_WEIGHT = 0.6
RELATED_WEIGHT = 0.5


@dataclass(frozen=True)
class _Candidate:
    passage: int
    text: str
    terms: frozenset[str]  # the sentence's and its heading's
    order: int
    own: frozenset[str] = frozenset()  # the sentence's alone


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


@dataclass(frozen=True)
class PassageView:
    """What the offline model reads of a passage: its number in the prompt and its parts."""

    n: int
    title: str
    text: str
    section: str = ""
    updated: str = ""


@dataclass(frozen=True)
class AnswerContext:
    """The structured side channel the pipeline hands the offline model with the prompt:
    the question as asked (cleaned of conversational noise), what a follow-up borrows from
    the thread (empty otherwise), and the passages. The rendered prompt's wording and
    markers can change with a new prompt version; this does not."""

    question: str
    passages: tuple[PassageView, ...]
    earlier: str = ""
    # Words that mean what the question's words mean (query expansion): a sentence using
    # them earns part of the credit; they never make the question longer to satisfy.
    related: str = ""

    def to_kwargs(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "earlier": self.earlier,
            "related": self.related,
            "passages": [vars(p) for p in self.passages],
        }

    @classmethod
    def from_kwargs(cls, data: Any) -> AnswerContext | None:
        if not isinstance(data, dict):
            return None
        try:
            return cls(
                question=str(data["question"]),
                earlier=str(data.get("earlier") or ""),
                related=str(data.get("related") or ""),
                passages=tuple(PassageView(**p) for p in data["passages"]),
            )
        except (KeyError, TypeError):
            return None

    @classmethod
    def from_prompt(cls, prompt: str) -> AnswerContext:
        """For a caller that passes only the rendered prompt (the default template)."""
        asked = HISTORY_Q_RE.findall(_section("history", prompt))
        question = _section("question", prompt)
        return cls(
            question=question,
            earlier=asked[-1] if asked and len(_stems(question)) <= 3 else "",
            passages=tuple(
                PassageView(n, header.split(" | ", 1)[-1], text)
                for n, header, text in parse_passages(_section("passages", prompt))
            ),
        )


def compose_answer(
    prompt: str, *, max_sentences: int = 3, max_words: int = 110
) -> tuple[str, bool]:
    """The extractive answer for a rendered prompt, and whether it found one."""
    return answer_from(
        AnswerContext.from_prompt(prompt), max_sentences=max_sentences, max_words=max_words
    )


def _superseded(passages: tuple[PassageView, ...]) -> dict[int, str]:
    """Passages that an updated version of the same topic replaces: same title words (or
    most of them) with an older date. Maps the older passage's number to the newer date."""
    out: dict[int, str] = {}
    dated = [p for p in passages if p.updated]
    for old in dated:
        old_topic = _topic(old.title)
        for new in dated:
            if new.updated > old.updated and _same_topic(old_topic, _topic(new.title)):
                out[old.n] = max(new.updated, out.get(old.n, ""))
    return out


YEARISH = re.compile(r"^(?:19|20)\d\d$|^v\d+$|^(?:old|new|current|draft|updated|revised)$")


def _topic(title: str) -> frozenset[str]:
    return frozenset(stem(w) for w in content_words(title) if not YEARISH.match(w))


def _same_topic(a: frozenset[str], b: frozenset[str]) -> bool:
    return bool(a and b) and len(a & b) / len(a | b) >= 0.6


def _semantic(query: str, texts: list[str]) -> list[float]:
    """Cosine similarity of each text to the query with the local embedding model, or
    zeros when it is not installed (words alone then decide)."""
    try:
        from bot.core.embeddings import local_embedder

        model = local_embedder()
    except Exception:  # the model is optional for the offline answerer
        return [0.0] * len(texts)
    q = model.query_vector(query)
    rows = model.embed_documents(texts)
    return [float(x) for x in rows @ q]


MONTHS = (
    "january|february|march|april|may|june|july|august|september|october|november|december|"
    "jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec"
)
ANSWER_TYPES: tuple[tuple[re.Pattern[str], re.Pattern[str]], ...] = (
    (
        re.compile(r"\b(?:when|until|deadline|by what date|what date|how long|how soon)\b", re.I),
        re.compile(
            rf"\b(?:\d{{1,2}} (?:{MONTHS})|(?:{MONTHS}) \d{{1,2}}|\d{{4}}-\d\d-\d\d|"
            r"\d+ (?:days?|weeks?|months?|years?|hours?|working days)|"
            r"monday|tuesday|wednesday|thursday|friday|within|before|by the end)\b",
            re.I,
        ),
    ),
    (
        re.compile(r"\b(?:how (?:many|much)|what (?:amount|percentage|limit|cap))\b", re.I),
        re.compile(r"\d"),
    ),
    (
        re.compile(r"\b(?:who|whom)\b", re.I),
        re.compile(r"\b(?:[A-Z][a-z]+ [A-Z][a-z]+|manager|team|director|head|lead|owner|cfo)\b"),
    ),
)
TYPE_BONUS = 0.1


def _answer_type(question: str) -> re.Pattern[str] | None:
    """What an answer to ``question`` looks like (a date or duration, a number, a person),
    when the question says so: a sentence of that shape is a little more likely to answer."""
    for asks, shape in ANSWER_TYPES:
        if asks.search(question):
            return shape
    return None


def answer_from(
    ctx: AnswerContext, *, max_sentences: int = 3, max_words: int = 110
) -> tuple[str, bool]:
    """The extractive answer and whether it found one: sentences scored by the question's
    words they share (weighted by rarity) and by meaning (embedding similarity), from the
    newest version of a topic; nothing when the best sentence is not relevant enough."""
    # A follow-up ("and until when?") leans on the question it follows; its own words count
    # only when they mean something ("until", "when" alone do not).
    strict = frozenset(stem(w) for w in meaningful_words(ctx.question))
    if ctx.earlier and not strict:
        current: frozenset[str] = frozenset()
    else:
        current = strict or _stems(ctx.question)
    earlier = _stems(ctx.earlier) - current if ctx.earlier else frozenset()
    q_terms = current | earlier
    if not q_terms:
        return NO_ANSWER, False
    weight = {t: (0.6 if t in earlier else 1.0) for t in q_terms}
    old = _superseded(ctx.passages)
    candidates: list[_Candidate] = []
    for p in ctx.passages:
        if p.n in old:
            continue
        header = f"{p.title} {p.section}"
        for j, sent in enumerate(sentences(flatten_tables(p.text))):
            sent = MARKUP_RE.sub("", sent).strip()
            if len(words(sent)) < 4:
                continue
            own = _stems(sent)
            candidates.append(_Candidate(p.n, sent, own | _stems(header), j, own))
    if not candidates:
        return NO_ANSWER, False
    df: dict[str, int] = {}
    for c in candidates:
        for t in c.terms & q_terms:
            df[t] = df.get(t, 0) + 1
    n = len(candidates)
    related = _stems(ctx.related) - q_terms if ctx.related else frozenset()
    for c in candidates:
        for t in c.terms & related:
            df[t] = df.get(t, 0) + 1
    idf = {t: weight[t] * math.log(1 + n / (1 + df.get(t, 0))) for t in q_terms}
    total = sum(idf.values())
    # Related words count for at most what one question word of average weight would.
    rel_idf = {t: RELATED_WEIGHT * math.log(1 + n / (1 + df.get(t, 0))) for t in related}
    rel_cap = total / max(1, len(q_terms))
    query = " ".join(x for x in (ctx.earlier, ctx.question) if x)
    meaning = dict(zip(candidates, _semantic(query, [c.text for c in candidates]), strict=True))

    wanted = _answer_type(ctx.question)

    def score(c: _Candidate) -> float:
        hit = sum(idf[t] * (1.0 if t in c.own else HEADING_WEIGHT) for t in c.terms & q_terms)
        if related:
            hit += min(rel_cap, sum(rel_idf[t] for t in c.own & related))
        hit /= total
        sem = max(0.0, meaning[c] - SEMANTIC_FLOOR)
        typed = TYPE_BONUS if wanted is not None and wanted.search(c.text) else 0.0
        return hit + SEMANTIC_WEIGHT * sem + typed - 0.02 * (c.passage - 1) - 0.01 * c.order

    ranked = sorted(candidates, key=score, reverse=True)
    best = ranked[0]
    if score(best) < MIN_SENTENCE_SCORE:
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
    answer = " ".join(parts)
    dates = {p.n: p.updated for p in ctx.passages}
    newer = sorted({dates[c.passage] for c in chosen if dates.get(c.passage)} & set(old.values()))
    if newer:
        answer += f" (From the version updated {newer[-1]}; an older version says otherwise.)"
    return answer, True


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
        last = messages[-1] if messages else None
        ctx = AnswerContext.from_kwargs(last.additional_kwargs.get(CONTEXT_KEY)) if last else None
        if ctx is None:
            ctx = AnswerContext.from_prompt(str(last.content) if last else "")
        answer, found = answer_from(ctx)
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
