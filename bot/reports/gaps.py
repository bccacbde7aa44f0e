"""The content-gap list: the questions Concierge could not answer, grouped by topic.

Owners fix gaps by adding to their documents, so the report groups what went unanswered (no
answer, or an answer voted down more than up) by what it was about, with counts, a few example
questions and the documents nearest to each topic (the likeliest places to add the answer).

Grouping is deterministic and explainable: each question becomes its set of normalised content
words (greetings, codes and stopwords removed, plurals folded), and two questions belong to the
same topic when their word sets overlap enough (Jaccard >= 1/3); topics are the connected
groups of that relation, so the result does not depend on the order of the rows. A topic is
named by the words most of its questions share.

Only questions every reader of the report may read (``Row.shown``) are grouped, named and
searched for: a hidden question's words would leak through a topic name or its nearest
documents, so hidden questions are only counted (``Report.unanswered_hidden``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from bot.core.query import clean_question, content_words
from bot.reports.metrics import Row

LISTED = 25  # topics listed with examples and nearest documents; the rest are summed up
SIMILAR = 1 / 3  # Jaccard overlap of two questions' word sets that puts them in one topic
EXAMPLES = 3
NEAREST = 3
TOPIC_WORDS = 3
NO_TOPIC = "(no topic words)"
# Words that say how something is asked, not what about.
FILLER = frozenset(
    (
        *("get", "got", "gets", "getting", "need", "needs", "know", "tell", "want", "find"),
        *("use", "using", "make", "like", "would", "should", "much", "many", "still", "ok"),
        *("okay", "also", "anyone", "someone", "somebody", "thing", "things", "way", "please"),
        "help",
    )
)


@dataclass(frozen=True)
class NearestDoc:
    title: str
    source: str
    uri: str


@dataclass
class Gap:
    """One topic of unanswered questions."""

    topic: str
    words: tuple[str, ...]  # the topic's words, most shared first (the search query)
    rows: list[Row]
    nearest: list[NearestDoc] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.rows)

    @property
    def no_answer(self) -> int:
        return sum(1 for r in self.rows if r.outcome == "no_answer")

    @property
    def voted_down(self) -> int:
        return sum(1 for r in self.rows if r.outcome != "no_answer")

    @property
    def askers(self) -> int:
        return len({r.asker for r in self.rows})

    @property
    def examples(self) -> list[Row]:
        """Up to three distinct questions, most recent first."""
        seen: set[str] = set()
        out: list[Row] = []
        for r in sorted(self.rows, key=lambda r: (r.at, r.id), reverse=True):
            key = " ".join((r.question or "").lower().split())
            if key and key not in seen:
                seen.add(key)
                out.append(r)
            if len(out) == EXAMPLES:
                break
        return out


def _stem(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def keywords(question: str) -> list[str]:
    """The question's normalised content words, in order, without repeats."""
    out: list[str] = []
    for w in content_words(clean_question(question)):
        w = _stem(w.lower().strip("_'"))
        if w and w not in FILLER and not w.isdigit() and w not in out:
            out.append(w)
    return out


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


def group(rows: Sequence[Row]) -> list[Gap]:
    """Topics of the given (shown, unanswered) rows, biggest first."""
    ordered = sorted(rows, key=lambda r: (r.at, r.id))
    words = [keywords(r.question or "") for r in ordered]
    sets = [set(w) for w in words]
    parent = list(range(len(ordered)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    # Only questions that share a word can be similar: compare those (an inverted index),
    # not every pair.
    seen: dict[str, list[int]] = {}
    for i, mine in enumerate(sets):
        candidates = {j for w in mine for j in seen.get(w, ())}
        for j in sorted(candidates):
            if _jaccard(mine, sets[j]) >= SIMILAR:
                parent[root(i)] = root(j)
        for w in mine:
            seen.setdefault(w, []).append(i)
    members: dict[int, list[int]] = {}
    for i in range(len(ordered)):
        # Questions without a content word ("hi", "?") make one group of their own.
        key = root(i) if sets[i] else -1
        members.setdefault(key, []).append(i)
    gaps = [_gap([ordered[i] for i in idx], [words[i] for i in idx]) for idx in members.values()]
    return sorted(gaps, key=lambda g: (-g.count, -max(r.at for r in g.rows).timestamp(), g.topic))


def _gap(rows: list[Row], words: list[list[str]]) -> Gap:
    counts: Counter[str] = Counter(w for ws in words for w in ws)
    order: dict[str, int] = {}  # ties go to the word met first (in time order)
    for n, w in enumerate(w for ws in words for w in ws):
        order.setdefault(w, n)
    ranked = sorted(counts, key=lambda w: (-counts[w], order[w]))
    if not ranked:
        return Gap(NO_TOPIC, (), rows)
    # Named by the words most of its questions share (at least the commonest).
    shared = [w for w in ranked if counts[w] * 2 > len(rows)] or ranked[:1]
    return Gap(" ".join(shared[:TOPIC_WORDS]), tuple(ranked[:6]), rows)


Search = Callable[[str], Awaitable[list[NearestDoc]]]


async def attach_nearest(gaps: list[Gap], search: Search) -> None:
    """Fill each topic's nearest documents with ``search`` (which must return only documents
    every reader of the report may read)."""
    for gap in gaps[:LISTED]:
        if gap.words:
            gap.nearest = (await search(" ".join(gap.words)))[:NEAREST]
