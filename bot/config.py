"""The workspace config file (YAML), validated by pydantic.

A bad file is refused at start with one line naming the file, the field path and the problem.
Relative paths in the file are resolved against the file's own folder.
"""

from __future__ import annotations

import difflib
import re
import urllib.parse
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bot.errors import ConfigError

# An email is LOCAL@X.Y (no "@", ":" or whitespace in any part). Written with possessive
# quantifiers and a look-ahead so that matching is linear in the input: the plain pattern
# ``^[^@\s:]+@[^@\s:]+\.[^@\s:]+$`` backtracks over every dot and took seconds on a 16 KB
# string. After the look-ahead has checked the whole domain, the first dot past its first
# character must be followed by one more character; that is exactly "X.Y with X, Y non-empty".
EMAIL_RE = re.compile(r"^[^@\s:]++@(?=[^@\s:]++$)[^@\s:][^.]*+\.[^@\s:]")
MAX_READER_CHARS = 320  # an email address is at most 254; a role or group name far less
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
DataClass = Literal["public", "internal", "confidential"]
DATA_CLASSES: tuple[DataClass, ...] = ("public", "internal", "confidential")
SOURCE_KINDS = ("docs", "http", "sql")


USERGROUP_ID_RE = re.compile(r"^S[A-Z0-9]+$")
HANDLE_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,79}$")


def usergroup_ref(entry: str) -> str:
    """A ``slack_groups`` entry as ``id:S0123…`` or ``handle:name`` ("" when it is neither).

    An id is upper case (``S0123ABC``); anything else is a handle, compared as lower case
    with handles only, so that a user group cannot take a bound id as its handle."""
    value = entry.strip()
    if USERGROUP_ID_RE.match(value):
        return f"id:{value}"
    handle = value.lstrip("@").lower()
    return f"handle:{handle}" if HANDLE_RE.match(handle) else ""


def normalise_reader(entry: str) -> str:
    """Turn a config reader (``everyone``, ``role:x``, ``group:x``, ``channel:x``, an email)
    into a principal token (``everyone``, ``role:x``, ``group:x``, ``channel:x``, ``user:email``).
    Raises ValueError for anything else; runs in time linear in ``entry`` and refuses entries
    longer than MAX_READER_CHARS, so a hostile document or config cannot stall validation.
    """
    if len(entry) > MAX_READER_CHARS:
        raise ValueError(
            f"{entry[:40]!r}… is not a reader: it is {len(entry)} characters long "
            f"(at most {MAX_READER_CHARS})"
        )
    value = entry.strip()
    low = value.lower()
    if low == "everyone":
        return "everyone"
    for prefix in ("role:", "group:", "channel:"):
        if low.startswith(prefix):
            name = low[len(prefix) :].lstrip("#@").strip()
            if not name:
                raise ValueError(f"{entry!r} names no {prefix[:-1]}")
            return prefix + name
    if EMAIL_RE.match(value):
        return "user:" + low
    raise ValueError(
        f"{entry!r} is not a reader: use everyone, role:NAME, group:NAME or an email address"
    )


def check_http_url(url: str) -> None:
    """An http source's ``url``: the asker's question (``{query}``) and ``{k}`` may go in its
    path or query string only, never where they could choose the host that receives the
    source's credentials (raises ValueError with a message for the config's author)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or "{query}" not in url:
        raise ValueError("an http source needs url: http(s)://host/…{query}…")
    for placeholder in ("{query}", "{k}"):
        if placeholder in parts.netloc or placeholder in parts.fragment:
            raise ValueError(
                f"the url may hold {placeholder} only in its path or query string, "
                "never in its host, port or #fragment"
            )
    if parts.username is not None or parts.password is not None:
        raise ValueError("the url must not hold credentials: use auth_header and auth_env")
    if any(urllib.parse.unquote(s) in (".", "..") for s in parts.path.split("/")):
        raise ValueError("the url must not contain '.' or '..' path segments")


class _Strict(BaseModel):
    # Unknown keys are kept aside and reported as warnings rather than refused, so that a
    # config written for a newer Concierge still starts (see ``unknown_keys``).
    model_config = ConfigDict(extra="allow", frozen=True)


class Person(_Strict):
    email: str
    groups: tuple[str, ...] = ()
    guest: bool = False
    name: str | None = None

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        if not EMAIL_RE.match(value.strip()):
            raise ValueError(f"{value!r} is not an email address")
        return value.strip().lower()

    @field_validator("groups")
    @classmethod
    def _groups(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(g.strip().lower().removeprefix("group:") for g in value)


class Role(_Strict):
    members: tuple[str, ...] = ()
    description: str | None = None

    @field_validator("members")
    @classmethod
    def _members(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        out = []
        for entry in value:
            token = normalise_reader(entry)
            if not token.startswith(("user:", "group:")):
                raise ValueError(f"{entry!r}: role members are emails or group:NAME")
            out.append(token)
        return tuple(out)


class Source(BaseModel):
    """One source of passages. Kind-specific settings (``path`` for docs, …) are extra keys."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str
    kind: str
    readers: Literal["everyone"] | tuple[str, ...]
    data_class: DataClass = "internal"
    owner: str | None = None
    review: Literal["required", "none"] = "none"
    title: str | None = None
    description: str | None = None
    timeout_s: float = Field(default=2.0, gt=0, le=60)
    requestable: bool = False
    review_channel: str | None = None  # where drafts for review go (else the owner's DMs)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_RE.match(value):
            raise ValueError(
                f"{value!r}: a source name is lowercase letters, digits, '.', '_' or '-'"
            )
        return value

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str) -> str:
        if value not in SOURCE_KINDS:
            near = nearest(value, SOURCE_KINDS)
            hint = f"; did you mean {near!r}?" if near else ""
            raise ValueError(
                f"unknown kind {value!r}; known kinds: {', '.join(SOURCE_KINDS)}{hint}"
            )
        return value

    @field_validator("readers", mode="before")
    @classmethod
    def _readers(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("a source must state its readers (everyone or a list)")
        if isinstance(value, str):
            if value.strip().lower() == "everyone":
                return "everyone"
            value = [value]
        if isinstance(value, list | tuple):
            if not value:
                raise ValueError("an empty readers list would hide the source from everyone")
            tokens = tuple(normalise_reader(str(v)) for v in value)
            return "everyone" if "everyone" in tokens else tokens
        raise ValueError("readers must be 'everyone' or a list")

    @field_validator("owner")
    @classmethod
    def _owner(cls, value: str | None) -> str | None:
        if value is not None and not EMAIL_RE.match(value.strip()):
            raise ValueError(f"{value!r} is not an email address")
        return value.strip().lower() if value else None

    @model_validator(mode="after")
    def _kind_settings(self) -> Source:
        """Each kind's own settings, checked when the file is loaded (not at first use)."""
        extra = self.model_extra or {}
        if self.kind == "http":
            check_http_url(str(extra.get("url") or ""))
            if extra.get("auth_header") and not extra.get("auth_env"):
                raise ValueError("auth_header needs auth_env: the variable holding its value")
        if self.kind == "sql":
            if not (extra.get("url") or extra.get("url_env")):
                raise ValueError("a sql source needs url_env (or url without a password)")
            queries = extra.get("queries")
            if not isinstance(queries, list) or not queries:
                raise ValueError("a sql source needs queries: [{name, sql, fields}]")
            for q in queries:
                sql = str((q or {}).get("sql", "")) if isinstance(q, dict) else ""
                first = sql.strip().split(None, 1)[0].lower() if sql.strip() else ""
                if first not in ("select", "with") or ";" in sql.strip().rstrip(";"):
                    raise ValueError("each sql query must be a single SELECT")
        return self

    @property
    def reader_tokens(self) -> frozenset[str]:
        return frozenset(["everyone"]) if self.readers == "everyone" else frozenset(self.readers)

    @property
    def is_public(self) -> bool:
        return self.readers == "everyone"

    def setting(self, key: str, default: Any = None) -> Any:
        """A kind-specific setting (the extra keys of the source entry)."""
        extra = self.model_extra or {}
        return extra.get(key, default)


class Price(_Strict):
    input: float = Field(default=0.0, ge=0)
    output: float = Field(default=0.0, ge=0)


class ModelSpec(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    name: str
    provider: Literal["offline", "openai", "anthropic"]
    model: str | None = None
    base_url: str | None = None
    price: Price = Price()
    data_classes: tuple[DataClass, ...] | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, gt=0)
    # Send this model only redacted text (personal data and secrets replaced): for a provider
    # whose terms or region allow no personal data.
    redact: bool = False

    @model_validator(mode="after")
    def _needs_model(self) -> ModelSpec:
        if self.provider != "offline" and not self.model:
            raise ValueError(f"model {self.name!r}: provider {self.provider} needs 'model'")
        return self

    @property
    def accepted_classes(self) -> frozenset[str]:
        if self.data_classes is not None:
            return frozenset(self.data_classes)
        if self.provider == "offline":
            return frozenset(DATA_CLASSES)
        return frozenset({"public", "internal"})


class Routing(_Strict):
    chain: tuple[str, ...] = ()
    first_token_timeout_s: float = Field(default=4.0, gt=0)
    # The longest wait before a comparable model is started beside a silent one; the delay
    # actually used follows each model's observed first-token p95 (bot/core/hedging.py).
    # The offline model is never a hedge: it answers when the others fail or time out.
    hedge_after_s: float | None = Field(default=1.5, gt=0)
    # A stream silent this long after it started is carried on by the next model.
    stall_timeout_s: float = Field(default=5.0, gt=0)
    total_timeout_s: float = Field(default=60.0, gt=0)
    breaker_failures: int = Field(default=3, ge=1)
    breaker_cooldown_s: float = Field(default=30.0, gt=0)
    # The cheaper chain used near a cost budget's soft limit; default: the chain without its
    # first link.
    step_down_chain: tuple[str, ...] | None = None


class Limits(_Strict):
    questions_per_minute: int = Field(default=20, ge=1)
    max_question_chars: int = Field(default=4000, ge=100)
    # An answer is cut here (and marked so): a runaway model, or a document that asks to be
    # repeated a thousand times, cannot flood a channel or the store.
    max_answer_chars: int = Field(default=12_000, ge=500, le=200_000)
    person_daily_usd: float | None = Field(default=None, ge=0)
    workspace_monthly_usd: float | None = Field(default=None, ge=0)
    # Past this share of a budget, answers come from the routing's step-down chain.
    budget_soft_fraction: float = Field(default=0.8, gt=0, le=1)


class QueryRewrite(_Strict):
    """An optional hosted-model step before retrieval: the question (and what a follow-up
    borrows from its thread) rewritten into search terms, abbreviations spelled out and
    synonyms added. Off unless ``model`` names a hosted model; never longer than
    ``timeout_s`` (the original question is searched then); its tokens and cost are recorded
    with the exchange."""

    model: str | None = None
    timeout_s: float = Field(default=1.5, gt=0, le=30)
    max_chars: int = Field(default=300, ge=20, le=2000)


class Retrieval(_Strict):
    top_k: int = Field(default=6, ge=1, le=50)
    # Below this fused relevance (0..1) for the best passage, there is no answer: the model
    # is not asked and the nearest documents are named instead. Applies only when every
    # passage carries a relevance (docs sources); 0 turns it off. Calibrated on
    # bench/quality.py.
    min_relevance: float = Field(default=0.12, ge=0, le=1)
    history_turns: int = Field(default=4, ge=0, le=50)
    history_tokens: int = Field(default=1500, ge=0, le=100_000)
    rewrite: QueryRewrite = QueryRewrite()
    # Groups of words people use for the same thing (query expansion, bot/core/synonyms.py),
    # added to the built-in workplace vocabulary unless ``builtin_synonyms`` is false.
    synonyms: tuple[tuple[str, ...], ...] = ()
    builtin_synonyms: bool = True


class Embeddings(_Strict):
    """The dense half of hybrid retrieval. ``local``: a static embedding model whose weights
    ship in a registry package (CPU, no network). ``openai``: any OpenAI-compatible
    ``/v1/embeddings`` endpoint; it receives document text, so only sources of the data
    classes it accepts are embedded (the others are searched by words only). ``off``: words
    only."""

    provider: Literal["local", "openai", "off"] = "local"
    model: str | None = None
    base_url: str | None = None
    price: Price = Price()  # USD per million input tokens (``input``)
    # local: 64, 128 (default) or 256; openai: sent as ``dimensions`` when set.
    dimensions: int | None = Field(default=None, gt=0)
    data_classes: tuple[DataClass, ...] | None = None
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    batch_size: int = Field(default=64, ge=1, le=2048)

    @model_validator(mode="after")
    def _needs_model(self) -> Embeddings:
        if self.provider == "openai" and not self.model:
            raise ValueError("embeddings: provider openai needs 'model'")
        return self

    @property
    def accepted_classes(self) -> frozenset[str]:
        """Local runs on this machine and may read everything; a remote endpoint accepts
        public and internal text unless ``data_classes`` says otherwise."""
        if self.provider != "openai":
            return frozenset(DATA_CLASSES)
        return frozenset(self.data_classes or ("public", "internal"))


JOB_NAMES = (
    "weekly_report",
    "retention_purge",
    "reindex",
    "review_reminders",
    "grant_expiry",
    "delivery_purge",
)


class Jobs(_Strict):
    """When each scheduled job runs: a crontab line (minute hour day month weekday) in
    ``timezone``, or ``off``."""

    timezone: str = "UTC"
    weekly_report: str | None = "0 9 * * mon"
    retention_purge: str | None = "30 3 * * *"
    reindex: str | None = "*/30 * * * *"
    review_reminders: str | None = "*/15 * * * *"
    grant_expiry: str | None = "* * * * *"
    delivery_purge: str | None = "*/10 * * * *"

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (for example UTC or Europe/Paris)"
            ) from None
        return value

    @field_validator(*JOB_NAMES)
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is None or value.strip().lower() in ("off", "never", ""):
            return None
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(value)
        except ValueError as exc:
            raise ValueError(
                f"{value!r} is not a crontab line (minute hour day month weekday): {exc}"
            ) from None
        return value

    def schedule(self) -> dict[str, str]:
        return {name: cron for name in JOB_NAMES if (cron := getattr(self, name))}


Detector = Literal["secret", "email", "card", "iban", "phone"]


class RedactionSettings(_Strict):
    """Which detectors run, and whether questions are redacted before they are stored."""

    detectors: tuple[Detector, ...] = ("secret", "email", "iban", "card", "phone")
    questions: bool = True  # question text is redacted before it is stored or logged


class Retention(_Strict):
    # Question and answer text older than this many days is removed; numbers stay.
    days: int | None = Field(default=None, ge=1)


class ReviewSettings(_Strict):
    remind_after_h: float = Field(default=24, gt=0)


class WorkspaceConfig(_Strict):
    """The validated config file. ``path`` is where it was read from."""

    name: str = "workspace"
    admins: tuple[str, ...] = ()
    slack_admins: bool = False  # Slack workspace admins and owners may also manage access
    owners: tuple[str, ...] = ()
    people: tuple[Person, ...] = ()
    roles: dict[str, Role] = {}
    sources: tuple[Source, ...]
    models: tuple[ModelSpec, ...] = (ModelSpec(name="offline", provider="offline"),)
    routing: Routing = Routing()
    limits: Limits = Limits()
    retrieval: Retrieval = Retrieval()
    embeddings: Embeddings = Embeddings()
    jobs: Jobs = Jobs()
    retention: Retention = Retention()
    redaction: RedactionSettings = RedactionSettings()
    review: ReviewSettings = ReviewSettings()
    default_person: str | None = None
    # Slack user groups that count as a config group: {GROUP: [user group id S… or handle]}.
    # Only these do; an unbound user group gives nothing (whoever may edit a user group in
    # Slack must not be able to give themselves a source).
    slack_groups: dict[str, tuple[str, ...]] = {}
    path: Path = Path(".")

    @field_validator("admins", "owners")
    @classmethod
    def _emails(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for v in value:
            if not EMAIL_RE.match(v.strip()):
                raise ValueError(f"{v!r} is not an email address")
        return tuple(v.strip().lower() for v in value)

    @field_validator("roles")
    @classmethod
    def _role_names(cls, value: dict[str, Role]) -> dict[str, Role]:
        return {k.strip().lower(): v for k, v in value.items()}

    @field_validator("slack_groups", mode="before")
    @classmethod
    def _slack_groups(cls, value: Any) -> dict[str, tuple[str, ...]]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ValueError("slack_groups maps group names to lists of Slack user groups")
        out: dict[str, tuple[str, ...]] = {}
        for name, entries in value.items():
            group = str(name).strip().lower().removeprefix("group:")
            if not isinstance(name, str) or not NAME_RE.match(group):
                raise ValueError(f"{name!r} is not a group name")
            if isinstance(entries, str):
                entries = [entries]
            if not isinstance(entries, list) or not entries:
                raise ValueError(
                    f"slack_groups.{group}: a list of Slack user group ids (S0123…) or handles"
                )
            bound = []
            for entry in entries:
                if not isinstance(entry, str) or not usergroup_ref(entry):
                    raise ValueError(
                        f"slack_groups.{group}: {entry!r} is not a Slack user group id or handle"
                    )
                bound.append(usergroup_ref(entry))
            out[group] = tuple(bound)
        return out

    @model_validator(mode="after")
    def _cross_checks(self) -> WorkspaceConfig:
        seen: set[str] = set()
        for s in self.sources:
            if s.name in seen:
                raise ValueError(f"source name {s.name!r} is used twice")
            seen.add(s.name)
            for token in s.reader_tokens:
                if token.startswith("role:") and token[5:] not in self.roles:
                    raise ValueError(
                        f"source {s.name!r} reads role {token[5:]!r}, not in roles"
                        + _did_you_mean(token[5:], self.roles)
                    )
        emails = [p.email for p in self.people]
        dupes = {e for e in emails if emails.count(e) > 1}
        if dupes:
            raise ValueError(f"person {sorted(dupes)[0]!r} is listed twice in people")
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ValueError("model names must be unique")
        for link in self.routing.chain:
            if link not in names:
                raise ValueError(
                    f"routing.chain names {link!r}, which is not in models"
                    + _did_you_mean(link, names)
                )
        rewriter = self.retrieval.rewrite.model
        if rewriter is not None:
            spec = next((m for m in self.models if m.name == rewriter), None)
            if spec is None:
                raise ValueError(
                    f"retrieval.rewrite.model names {rewriter!r}, which is not in models"
                    + _did_you_mean(rewriter, names)
                )
            if spec.provider == "offline":
                raise ValueError(
                    "retrieval.rewrite.model must be a hosted model: the offline model "
                    "cannot rewrite questions"
                )
        for link in self.routing.step_down_chain or ():
            if link not in names:
                raise ValueError(
                    f"routing.step_down_chain names {link!r}, which is not in models"
                    + _did_you_mean(link, names)
                )
        return self

    def source(self, name: str) -> Source | None:
        return next((s for s in self.sources if s.name == name), None)

    def groups_bound_to(self, usergroup_id: str, handle: str | None) -> frozenset[str]:
        """The config groups a Slack user group counts as (only where ``slack_groups`` binds
        it, by id, or by handle)."""
        keys = {f"id:{usergroup_id}"}
        if handle:
            keys.add(usergroup_ref("@" + handle.lstrip("@")))
        return frozenset(g for g, refs in self.slack_groups.items() if keys.intersection(refs))

    def reviewers(self, source: Source) -> tuple[str, ...]:
        """Who reviews answers that use ``source``: its owner, else the bot's owners."""
        return (source.owner,) if source.owner else self.owners

    def model_spec(self, name: str) -> ModelSpec | None:
        return next((m for m in self.models if m.name == name), None)

    @property
    def chain(self) -> tuple[str, ...]:
        """The routing chain; the offline model always ends it (an answer is always possible)."""
        chain = list(self.routing.chain or [m.name for m in self.models])
        offline = [m.name for m in self.models if m.provider == "offline"]
        if not set(offline) & set(chain):
            chain.append(offline[0] if offline else "offline")
        return tuple(chain)

    @property
    def step_down_chain(self) -> tuple[str, ...]:
        """The cheaper chain used near a cost budget's soft limit (offline still last)."""
        full = self.chain
        chain = list(self.routing.step_down_chain or (full[1:] if len(full) > 1 else full))
        if full[-1] not in chain:
            chain.append(full[-1])
        return tuple(chain)

    def resolve(self, relative: str | Path) -> Path:
        """A path from the file, relative to the file's own folder."""
        p = Path(relative).expanduser()
        return p if p.is_absolute() else (self.path.parent / p).resolve()


def _field_path(loc: tuple[Any, ...], data: Any) -> str:
    """``sources[2].readers`` from pydantic's loc, using source names where helpful."""
    parts: list[str] = []
    node = data
    for item in loc:
        if isinstance(item, int):
            label = f"[{item}]"
            if isinstance(node, list) and item < len(node) and isinstance(node[item], dict):
                name = node[item].get("name") or node[item].get("email")
                if name:
                    label = f"[{item}] ({name})"
            parts.append(label)
            node = node[item] if isinstance(node, list) and item < len(node) else None
        else:
            key = str(item)
            if key in {"literal['everyone']", "tuple[str, ...]"} or "[" in key:
                continue
            parts.append(("." if parts else "") + key)
            node = node.get(key) if isinstance(node, dict) else None
    return "".join(parts) or "(top level)"


def nearest(word: str, choices: Iterable[str]) -> str | None:
    """The choice closest to ``word`` (a misspelling), or None when none is close."""
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    near = nearest(word, choices)
    return f"; did you mean {near!r}?" if near else ""


def _unknown(model: BaseModel, where: str = "") -> list[tuple[str, str | None]]:
    """(dotted path, nearest known key) for each key this version does not know."""
    found: list[tuple[str, str | None]] = []
    if not isinstance(model, (Source, ModelSpec)):
        known = [k for k in type(model).model_fields if k != "path"]
        found += [(f"{where}{k}", nearest(str(k), known)) for k in (model.model_extra or {})]
    for name in type(model).model_fields:
        value = getattr(model, name)
        items = (
            value
            if isinstance(value, tuple)
            else (value.values() if isinstance(value, dict) else [value])
        )
        for i, item in enumerate(items):
            if isinstance(item, BaseModel):
                label = name if not isinstance(value, (tuple, dict)) else f"{name}[{i}]"
                found += _unknown(item, f"{where}{label}.")
    return found


def unknown_keys(model: BaseModel, where: str = "") -> list[str]:
    """Dotted paths of keys the config has but this version does not know (ignored).
    Sources and models keep extra keys on purpose (kind- and provider-specific settings)."""
    return [path for path, _ in _unknown(model, where)]


def unknown_key_warnings(config: WorkspaceConfig) -> list[str]:
    """One line per unknown key, with the nearest known key when one is close."""
    lines = []
    for path, near in _unknown(config):
        hint = ""
        if near is not None:
            parent = path.rpartition(".")[0]
            hint = f"; did you mean '{parent + '.' if parent else ''}{near}'?"
        lines.append(
            f"config file {config.path}: '{path}' is not a known setting and is ignored{hint}"
        )
    return lines


def _hint(err: Any, data: Any) -> str:
    """ "did you mean" for a misspelt required key or a misspelt choice."""
    if err["type"] == "missing" and err["loc"]:
        parent: Any = data
        for item in err["loc"][:-1]:
            if isinstance(parent, dict):
                parent = parent.get(item)
            elif isinstance(parent, list) and isinstance(item, int) and item < len(parent):
                parent = parent[item]
            else:
                return ""
        if isinstance(parent, dict):
            want = str(err["loc"][-1])
            typo = nearest(want, [str(k) for k in parent if k != want])
            if typo is not None:
                return f" (the file has '{typo}': did you mean '{want}'?)"
    if err["type"] == "literal_error" and isinstance(err.get("input"), str):
        choices = re.findall(r"'([^']*)'", str((err.get("ctx") or {}).get("expected", "")))
        near = nearest(err["input"], choices)
        if near is not None:
            return f"; did you mean '{near}'?"
    return ""


def load_config(path: Path) -> WorkspaceConfig:
    """Read and validate the config file, or raise ConfigError with one readable line."""
    path = Path(path).expanduser()
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {where} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {where} cannot be read: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ConfigError(f"config file {where}: invalid YAML{at}: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {where}: expected a mapping of keys at the top level")
    data = {k: v for k, v in data.items() if k != "path"}
    try:
        config = WorkspaceConfig.model_validate({**data, "path": path.resolve()})
    except ValidationError as exc:
        err = exc.errors()[0]
        field = _field_path(tuple(err["loc"]), data)
        msg = str(err["msg"]).removeprefix("Value error, ") + _hint(err, data)
        more = f" (and {exc.error_count() - 1} more problem(s))" if exc.error_count() > 1 else ""
        raise ConfigError(f"config file {where}: {field}: {msg}{more}") from None
    return config
