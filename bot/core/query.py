"""Query understanding: what a message asks, for retrieval.

People write "hey, quick one: how many PTO days carry over? (ref TCK-20931) :pray:". The
greeting, the mention, the emoji and the pasted ticket id say nothing about the answer, so
they are removed before searching and before the offline model weighs sentences; they must
never decide whether there is an answer.

A question borrows words from the thread's earlier turns only when it is a follow-up (short,
anaphoric or elliptical: "and until when?", "what about contractors?"); an unrelated next
question is searched on its own. Only turns the caller passes may be borrowed from: the
pipeline passes the turns that survived the audience's label filter (``visible_turns``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from bot.core.text import STOPWORDS, words
from bot.core.types import Turn

MENTION = re.compile(r"<[@#!][^>\s]*>|(?<!\w)@[\w.-]+")
SHORTCODE = re.compile(r":[a-z0-9_+-]{2,}:")
EMOJI = re.compile(
    "[\U0001f000-\U0001faff\U00002600-\U000027bf\U0001f900-\U0001f9ff\u2b00-\u2bff\ufe0f\u200d]+"
)
# A pasted reference: ticket ids (ABC-1234), #1234, or long letter-and-digit codes.
CODE = re.compile(
    r"(?<![\w-])(?:[A-Za-z]{2,}(?:-[A-Za-z0-9]+)*-\d+[A-Za-z0-9]*|#\d{3,}"
    r"|(?=[A-Za-z0-9]*\d)(?=[A-Za-z0-9]*[A-Za-z])[A-Za-z0-9]{7,})(?![\w-])"
)
REF_LABEL = re.compile(
    r"\b(?:ref(?:erence)?|ticket|case|incident|order|request|id|no\.?|number)\s*[:#]?\s*$",
    re.IGNORECASE,
)
OPENERS = re.compile(
    r"^(?:(?:hi|hey|hello|hiya|howdy|yo|morning|afternoon|evening|good (?:morning|afternoon|"
    r"evening|day)|greetings|dear|ok(?:ay)?|so|um+|uh+|hmm+|sorry|apologies|thanks|thank you|"
    r"thx|cheers|please|pls|folks|team|all|everyone|everybody|guys|y'all|there|again|"
    r"quick (?:one|question|q)|a quick (?:one|question)|one more|another (?:one|question)|"
    r"(?:i )?(?:have|got) a (?:quick )?question|question|q|"
    r"sorry to (?:bother|bug) (?:you|everyone)|"
    r"(?:does )?any ?(?:one|body) know|can (?:some|any) ?(?:one|body) (?:tell me|help)|"
    r"(?:i was |just )?wondering|i wonder|random question|silly question|any ?idea|"
    r"concierge|bot)\b[\s,;:.!?\-–—]*)+",
    re.IGNORECASE,
)
CLOSERS = re.compile(
    r"(?:[\s,;.!-]*\b(?:thanks|thank you|thx|ty|cheers|please|pls|in advance|much appreciated|"
    r"appreciate it|tia)\b[\s!.]*)+$",
    re.IGNORECASE,
)
# A follow-up leans on the previous question: it opens like a continuation, or points back.
CONTINUATION = re.compile(
    r"^(?:and|but|also|or|plus|so|then|what about|how about|what if|same for|and for|"
    r"is that|does that|do they|is it|does it|can i still|and if)\b",
    re.IGNORECASE,
)
ANAPHORA = re.compile(r"\b(?:it|that|this|those|these|they|them|there|then|its|their)\b", re.I)
FOLLOWUP_MAX_WORDS = 4
MIN_CODE_FREE_WORDS = 2


QUESTION_WORDS = frozenset(("what", "who", "whom", "which", "when", "where", "why", "how"))


def content_words(text: str) -> list[str]:
    """Words that carry meaning (no stopwords, no question words); possibly none."""
    return [
        w
        for w in words(text)
        if w not in STOPWORDS and w not in QUESTION_WORDS and (len(w) > 1 or not w.isascii())
    ]


def clean_question(text: str) -> str:
    """The question without greetings, mentions, emoji, sign-offs and pasted reference codes.
    A code stays when it is most of what was asked ("what is INC-4411 about?")."""
    out = MENTION.sub(" ", text)
    out = SHORTCODE.sub(" ", out)
    out = EMOJI.sub(" ", out)
    without_codes = _drop_codes(out)
    if len(content_words(without_codes)) >= MIN_CODE_FREE_WORDS:
        out = without_codes
    out = re.sub(r"\s+", " ", out).strip()
    stripped = CLOSERS.sub("", OPENERS.sub("", out)).strip(" ,;:-–—")
    return stripped if content_words(stripped) else out


# What may be left of small talk once greetings and thanks are removed ("how are you?").
SMALL_TALK_REST = re.compile(
    r"^(?:how are you(?: doing| today)?|how(?:'s| is) it going|what(?:'s| is) up|sup|"
    r"who are you|what are you|what can you do|what do you do|what can i ask(?: you)?|"
    r"what can you help (?:me )?with|help|(?:so |very )?much|a lot|lots|a bunch|"
    r"for (?:the|your|all the) (?:help|answer|info)|for that|"
    r"that(?:'s| is| was)? (?:great|perfect|helpful|it)|that helped|great|perfect|awesome|"
    r"got it|nice|cool|mate|buddy|you|again)$",
    re.IGNORECASE,
)
SMALL_TALK_MAX_CHARS = 200
THANKS = re.compile(r"\b(?:thanks|thank you|thx|ty|cheers|appreciated?|tia)\b", re.IGNORECASE)


def small_talk(text: str) -> str | None:
    """``"greeting"`` or ``"thanks"`` when a message is only that ("hi", "hey there",
    "thanks!", "what can you do?"), else None. A greeting before a question ("hey, quick
    one: …") is a question: only a message with nothing left to search is small talk."""
    if len(text) > SMALL_TALK_MAX_CHARS:  # a long message is never only a greeting
        return None
    out = EMOJI.sub(" ", SHORTCODE.sub(" ", MENTION.sub(" ", text)))
    out = re.sub(r"\s+", " ", out).strip()
    if not words(out):
        return None
    rest = CLOSERS.sub("", OPENERS.sub("", out)).strip(" ,;:-–—.!?")
    if rest == out.strip(" ,;:-–—.!?") and not SMALL_TALK_REST.match(rest):
        return None  # nothing was a greeting: "why?" is a follow-up, not small talk
    if rest and not SMALL_TALK_REST.match(rest):
        return None
    return "thanks" if THANKS.search(out) else "greeting"


def _drop_codes(text: str) -> str:
    pieces: list[str] = []
    last = 0
    for m in CODE.finditer(text):
        before = REF_LABEL.sub("", text[last : m.start()])
        pieces.append(before)
        last = m.end()
    pieces.append(text[last:])
    return re.sub(r"[(\[]\s*[)\]]", " ", "".join(pieces))


def is_followup(text: str) -> bool:
    """Short and continuing, or pointing back ("and until when?", "what about contractors?",
    "does it apply to interns?"); a question that stands on its own is not one."""
    cleaned = clean_question(text)
    meaningful = content_words(cleaned)
    if not meaningful:  # "and until when?", "why?": nothing to search on its own
        return bool(words(cleaned))
    if CONTINUATION.match(cleaned):
        return len(meaningful) <= FOLLOWUP_MAX_WORDS + 1
    if ANAPHORA.search(cleaned):
        return len(meaningful) <= FOLLOWUP_MAX_WORDS
    return len(meaningful) <= 1


@dataclass(frozen=True)
class Understood:
    """A message read for retrieval: the question without noise, and what a follow-up
    borrows from the thread ("" for a question that stands on its own)."""

    question: str
    borrowed: str = ""
    related: str = ""  # words meaning what the question's words mean (query expansion)

    @property
    def query(self) -> str:
        return f"{self.borrowed} {self.question}".strip()


def understand(text: str, turns: Sequence[Turn]) -> Understood:
    """The cleaned question and, for a follow-up, the question it follows (itself followed
    back while it was a follow-up, two turns at most). ``turns`` must already be filtered
    for the audience (``visible_turns``); nothing else is borrowed from."""
    question = clean_question(text)
    if not is_followup(text):
        return Understood(question)
    borrowed: list[str] = []
    for turn in reversed(turns[-2:]):
        borrowed.insert(0, clean_question(turn.question))
        if not is_followup(turn.question):
            break
    return Understood(question, " ".join(borrowed))


def retrieval_query(text: str, turns: Sequence[Turn]) -> str:
    """What to search for (see ``understand``)."""
    return understand(text, turns).query
