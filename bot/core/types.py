"""Plain data passed along the pipeline. No behaviour beyond small conveniences."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from bot.core.labels import Labels

Outcome = Literal["answered", "refused", "no_answer", "incomplete", "failed", "pending_review"]
OUTCOMES: tuple[Outcome, ...] = (
    "answered",
    "refused",
    "no_answer",
    "incomplete",
    "failed",
    "pending_review",
)
AudienceKind = Literal["private", "channel"]
# Whether the person saw the answer: all of it, part of it (a front end's writes failed after
# some text was shown) or none of it.
Delivery = Literal["delivered", "partial", "failed"]


@dataclass(frozen=True)
class Asker:
    """Who is asking, as resolved by the identity step."""

    email: str
    groups: frozenset[str] = frozenset()
    guest: bool = False
    name: str | None = None
    ref: str | None = None  # the front end's own id (a Slack user id), if any
    workspace_admin: bool = False  # a Slack workspace admin or owner (a full member)
    # An account of another team or organisation (Slack Connect), or one that cannot be
    # placed because our own team is not known yet: always a guest too.
    external: bool = False
    # The directory vouches for the email (Slack: confirmed, and the account can be placed).
    # An unvouched email names nobody: it gets no access that names an email.
    email_verified: bool = True

    @property
    def is_full_member(self) -> bool:
        """A full member of our own team: the only kind of account that may hold admin,
        owner, approver or reviewer powers (which are granted by email, so the email must
        be the directory's, on an account of our own team that is not a guest)."""
        return not self.guest and not self.external and self.email_verified

    @property
    def not_a_member_because(self) -> str | None:
        """Why this account is not a full member (for refusals and the audit log)."""
        if self.external:
            return "an external account (another team or organisation, or not placed yet)"
        if self.guest:
            return "a guest account"
        if not self.email_verified:
            return "an account whose email is not confirmed"
        return None


@dataclass(frozen=True)
class Audience:
    """Who will be able to read the answer besides the asker.

    ``private``: only the asker (a DM, the terminal). ``channel``: a public channel or a shared
    thread, where only what every reader may see can be used.
    """

    kind: AudienceKind = "private"
    channel: str | None = None
    # A guest or an external (Slack Connect) member reads the channel: grants to the channel
    # do not count for them, so only what is for everyone may be used.
    has_guests: bool = False

    @property
    def is_private(self) -> bool:
        return self.kind == "private"

    @property
    def principals(self) -> frozenset[str]:
        """What every reader of a channel is known to hold."""
        if self.channel and not self.has_guests:
            return frozenset({"everyone", f"channel:{self.channel}"})
        return frozenset({"everyone"})

    @property
    def label(self) -> str:
        return "private" if self.is_private else f"channel:{self.channel}"


@dataclass(frozen=True)
class Turn:
    """An earlier turn of the same thread, as the audience saw it, with the labels of what it
    carried (unknown, which fails closed, unless the front end knows them)."""

    question: str
    answer: str
    labels: Labels = field(default_factory=Labels.unknown)


@dataclass(frozen=True)
class Question:
    text: str
    asker_ref: str  # email for the terminal; a Slack user id in Slack
    audience: Audience = Audience()
    surface: str = "cli"
    history: tuple[Turn, ...] = ()
    thread: str | None = None
    request_key: str | None = None  # de-duplication key from the front end
    private_followup: bool = False  # the front end sends the fuller answer privately itself
    channel_ref: str | None = None  # the front end's own channel id (a Slack channel id)
    received_at: float = field(default_factory=time.perf_counter)


@dataclass(frozen=True)
class Passage:
    """A piece of a source, with everything needed to cite it and to check who may see it."""

    source: str
    title: str
    uri: str
    text: str
    score: float = 0.0
    readers: tuple[str, ...] = ("*",)  # "*" = the source's own readers
    location: str = ""
    updated: str | None = None
    section: str | None = None
    data_class: str = "internal"
    # Who may read the source itself (set by ``Connector.search`` from the config, so that
    # no connector can forget it): ``everyone``, or reader tokens plus ``source:NAME``.
    source_readers: tuple[str, ...] = ("nobody",)
    # Fetched as one person (a sql query with :asker_email, an http identity header): the
    # row is theirs alone, whatever the source's readers say.
    personal: str | None = None
    # How well the passage answers the question on a 0..1 scale shared by the sources that
    # can tell (the docs connector's fused score); None when the source cannot tell.
    relevance: float | None = None

    def visible_to(self, principals: frozenset[str]) -> bool:
        """Front matter can only narrow: "*" inherits the source's readers."""
        return "*" in self.readers or bool(principals.intersection(self.readers))

    @property
    def labels(self) -> Labels:
        """What this passage's text carries: its class, its source's readers, its own
        narrowing readers and, for a per-person row, that person."""
        return Labels.of(
            self.data_class,
            self.source_readers,
            self.readers,
            (f"user:{self.personal}",) if self.personal else None,
        )

    def citation(self) -> dict[str, str]:
        return {"source": self.source, "title": self.title, "uri": self.uri}


@dataclass
class Attempt:
    """One model call within an exchange."""

    model: str
    # answered | failed | skipped | timeout | cancelled | incomplete | refused
    outcome: str = "started"
    # answer (the router's calls) | rewrite (the optional query rewrite before retrieval)
    purpose: str = "answer"
    started_ms: float = 0.0
    first_token_ms: float | None = None
    ended_ms: float | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    tokens_estimated: bool = False
    cost_usd: float = 0.0
    error: str | None = None
    no_answer: bool = False
    retries: int = 0  # calls of the same model again (Retry-After, trimmed prompt)
    notes: list[str] = field(default_factory=list)
    # The messages this attempt sent (the last version, after any trimming): stored with the
    # exchange for ``exchange show``, purged with the other text by retention.
    prompt: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ExchangeResult:
    """What happened to one question; recorded as one Exchange row and printed by ``--json``."""

    exchange_id: str
    asker: str
    question: str
    answer: str = ""
    outcome: Outcome = "failed"
    sources: list[dict[str, object]] = field(default_factory=list)
    sources_withheld: list[str] = field(default_factory=list)
    sources_searched: list[str] = field(default_factory=list)
    private_answer_available: bool = False
    model: str | None = None
    models_tried: list[str] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    tokens_estimated: bool = False
    cost_usd: float = 0.0
    ttft_ms: float | None = None
    total_ms: float = 0.0
    prompt_name: str = ""
    prompt_version: str = ""
    surface: str = "cli"
    channel: str | None = None
    thread: str | None = None
    audience: str = "private"
    error: str | None = None
    request_key: str | None = None
    asker_ref: str | None = None
    notices: list[str] = field(default_factory=list)
    requestable: list[str] = field(default_factory=list)  # sources offered for a request
    review_id: int | None = None  # pending_review: the held draft's review
    review_sources: list[str] = field(default_factory=list)
    verified_answer_id: int | None = None  # answered from an owner's verified answer
    draft: str | None = None  # the held draft: never shown to the asker, never printed
    # What the answer text carries: everything that went into its prompt (passages, history
    # turns) or the verified answer it repeats. Later turns, reviews and votes inherit it.
    labels: Labels = field(default_factory=Labels)
    # What redaction replaced in the stored question (detector -> count).
    redactions: dict[str, int] = field(default_factory=dict)
    # Set by the sink when it closes: what the person was actually shown (recorded).
    delivery: Delivery = "delivered"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("draft")
        # The prompts stay in the record (``exchange show``); the summary stays compact.
        data["attempts"] = [
            {k: v for k, v in a.as_dict().items() if k != "prompt"} for a in self.attempts
        ]
        data["labels"] = self.labels.to_json()
        data["cost_usd"] = round(self.cost_usd, 8)
        data["ttft_ms"] = None if self.ttft_ms is None else round(self.ttft_ms, 2)
        data["total_ms"] = round(self.total_ms, 2)
        return data
