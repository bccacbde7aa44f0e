"""The data-flow document (``app.py dataflow``): where every piece of text goes, from the
live config and settings — the answer to "where does our data flow?" a compliance reviewer
asks before a rollout.

``describe`` gathers the facts (pure: no network, no database); ``to_markdown`` and
``to_html`` render them, with a Mermaid diagram that common code hosts render. Nothing here
prints a secret: URLs lose their credentials, credentials are named by their variable only.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from bot.config import DATA_CLASSES, ModelSpec, Source, WorkspaceConfig
from bot.settings import Settings

OPENAI_DEFAULT = "https://api.openai.com/v1"
ANTHROPIC_DEFAULT = "https://api.anthropic.com"


@dataclass(frozen=True)
class SourceFlow:
    name: str
    title: str
    kind: str
    location: str  # where its text comes from (a folder, an origin, a database host)
    data_class: str
    readers: str
    owner: str
    review: str
    personal: bool  # rows fetched as the asker (sql :asker_email, http identity header)
    credentials: str  # the environment variable holding them, never the value
    models: tuple[str, ...]  # models that may receive its text


@dataclass(frozen=True)
class ModelFlow:
    name: str
    provider: str
    model: str
    runs: str  # where it runs: "this process" or the endpoint's origin
    accepts: tuple[str, ...]
    in_chain: bool
    price: str


@dataclass(frozen=True)
class Store:
    what: str
    where: str
    holds: str
    kept: str
    readers: str


@dataclass
class DataFlow:
    workspace: str
    config_path: str
    sources: list[SourceFlow] = field(default_factory=list)
    models: list[ModelFlow] = field(default_factory=list)
    stores: list[Store] = field(default_factory=list)
    endpoints: list[tuple[str, str]] = field(default_factory=list)  # (endpoint, what goes)


def safe_url(url: str) -> str:
    """A URL without user name, password, query or fragment: safe to print."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(unreadable URL)"
    if not parts.scheme:
        return url.split("?", 1)[0]
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    if parts.scheme.startswith("sqlite"):
        path = url.split(":///", 1)[1] if ":///" in url else ""
        return f"SQLite file {path.split('?', 1)[0]}" if path else "SQLite in memory"
    return f"{parts.scheme}://{host}{port}{parts.path if parts.path not in ('', '/') else ''}"


def origin(url: str) -> str:
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname or ''}{port}"


def model_runs(spec: ModelSpec, settings: Settings) -> str:
    if spec.provider == "offline":
        return "this process (no network)"
    if spec.provider == "openai":
        return origin(spec.base_url or settings.openai_base_url or OPENAI_DEFAULT)
    return origin(spec.base_url or ANTHROPIC_DEFAULT)


def _readers(source: Source) -> str:
    if source.is_public:
        return "everyone (guests included)"
    return ", ".join(t.removeprefix("user:") for t in sorted(source.reader_tokens))


def _location(source: Source, config: WorkspaceConfig) -> tuple[str, str]:
    """(where the text comes from, the variable holding credentials)."""
    if source.kind == "docs":
        return str(config.resolve(str(source.setting("path", source.name)))), ""
    if source.kind == "http":
        return origin(str(source.setting("url", ""))), str(source.setting("auth_env") or "")
    env = str(source.setting("url_env") or "")
    url = source.setting("url")
    return (safe_url(str(url)) if url else f"the database in ${env}"), env


def _personal(source: Source) -> bool:
    if source.kind == "http":
        return bool(source.setting("identity_header"))
    if source.kind == "sql":
        queries = source.setting("queries") or []
        return any(
            isinstance(q, dict) and re.search(r":asker_email\b", str(q.get("sql", "")))
            for q in queries
        )
    return False


def describe(config: WorkspaceConfig, settings: Settings) -> DataFlow:
    """Every flow of text the config and settings allow."""
    chain = set(config.chain)
    specs = [m for m in config.models if m.name in chain] + [
        m for m in config.models if m.name not in chain
    ]
    flow = DataFlow(workspace=config.name, config_path=str(config.path))
    for m in specs:
        accepts = tuple(c for c in DATA_CLASSES if c in m.accepted_classes)
        flow.models.append(
            ModelFlow(
                name=m.name,
                provider=m.provider,
                model=m.model or "extractive (quotes the passages)",
                runs=model_runs(m, settings),
                accepts=accepts,
                in_chain=m.name in chain,
                price=(
                    "free"
                    if m.provider == "offline"
                    else f"${m.price.input:g} in / ${m.price.output:g} out per 1M tokens"
                ),
            )
        )
    for s in config.sources:
        location, env = _location(s, config)
        flow.sources.append(
            SourceFlow(
                name=s.name,
                title=s.title or s.name,
                kind=s.kind,
                location=location,
                data_class=s.data_class,
                readers=_readers(s),
                owner=s.owner or "(none: the bot's owners)",
                review=(
                    f"required ({', '.join(config.reviewers(s)) or 'no reviewer'}"
                    + (f", in {s.review_channel}" if s.review_channel else "")
                    + ")"
                    if s.review == "required"
                    else "no"
                ),
                personal=_personal(s),
                credentials=env,
                models=tuple(
                    m.name for m in flow.models if m.in_chain and s.data_class in m.accepts
                ),
            )
        )
    kept = (
        f"question, answer, draft and reason text for {config.retention.days} days; counts, "
        "costs and latencies always"
        if config.retention.days
        else "until deleted (set retention.days to purge text)"
    )
    flow.stores = [
        Store(
            "Records",
            safe_url(settings.effective_database_url),
            "each exchange (asker, where, question, answer, sources used and withheld, "
            "models tried, tokens, cost, latencies, labels), votes and reasons, review "
            "drafts, verified answers, grants and the audit log (no answer text)",
            kept,
            "operators with database access; owners see questions, votes and reasons in the "
            "report (never answers); reviewers see drafts they may read; admins the audit log",
        ),
        Store(
            "Search index",
            str((settings.data_dir / "index").resolve()),
            "a copy of each docs source's passages, with their readers"
            + (
                f", and their embedding vectors ({config.embeddings.provider} model)"
                if config.embeddings.provider != "off"
                else ""
            ),
            "while the document exists (re-indexed as it changes)",
            "the Concierge process only; searched per asker's permissions",
        ),
        Store(
            "Slack",
            "your Slack workspace",
            "answers (channel answers use only what every member may read; the rest by DM), "
            "review items, reports",
            "Slack's own retention settings",
            "the members of each conversation",
        ),
        Store(
            "Logs",
            "standard error of each process",
            "events and errors; never message bodies or prompts (the Slack SDK and model "
            "clients never log below INFO)",
            "your log platform's retention",
            "operators",
        ),
    ]
    if settings.redis_url:
        flow.stores.append(
            Store(
                "Shared state",
                safe_url(settings.redis_url),
                "counters, delivery claims, budgets, breakers (no message text)",
                "minutes to a month (per key)",
                "operators",
            )
        )
    if settings.slack_bot_token or settings.slack_app_token:
        flow.endpoints.append(
            (origin(settings.slack_api_url), "answers, review items and reports (Web API)")
        )
    for mf in flow.models:
        if mf.provider != "offline" and mf.in_chain:
            flow.endpoints.append(
                (mf.runs, f"prompts of classes {', '.join(mf.accepts)} to model {mf.name}")
            )
    rewriter = config.retrieval.rewrite.model
    for mf in flow.models:
        if mf.name == rewriter:
            flow.endpoints.append(
                (
                    mf.runs,
                    f"each question (and the earlier questions a follow-up borrows, when their "
                    f"classes are among {', '.join(mf.accepts)}) to model {mf.name} for search "
                    "terms, before retrieval; never passages or answers",
                )
            )
    emb = config.embeddings
    if emb.provider == "openai":
        accepted = [c for c in DATA_CLASSES if c in emb.accepted_classes]
        embedded = [
            sf.name for sf in flow.sources if sf.kind == "docs" and sf.data_class in accepted
        ]
        flow.endpoints.append(
            (
                origin(emb.base_url or settings.openai_base_url or OPENAI_DEFAULT),
                "every question, and at index time the text of "
                f"{', '.join(embedded) or 'no source'} (classes {', '.join(accepted)}), "
                f"to embeddings model {emb.model}",
            )
        )
    for sf in flow.sources:
        if sf.kind in ("http", "sql"):
            flow.endpoints.append(
                (
                    sf.location,
                    f"the question{' and the asker' if sf.personal else ''} to source {sf.name}",
                )
            )
    return flow


# -- rendering --------------------------------------------------------------------------


def _node(prefix: str, name: str) -> str:
    return prefix + re.sub(r"[^A-Za-z0-9_]", "_", name)


def _label(text: str) -> str:
    """A Mermaid label in double quotes (quotes and markup neutralised)."""
    return '"' + text.replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;") + '"'


def mermaid(flow: DataFlow) -> str:
    lines = ["flowchart LR"]
    lines.append(f"  people[{_label('People: Slack or terminal')}]")
    lines.append(f"  concierge[{_label('Concierge')}]")
    lines.append(f"  db[({_label('Records: ' + flow.stores[0].where)})]")
    lines.append("  people -->|questions| concierge")
    lines.append("  concierge -->|answers| people")
    lines.append("  concierge -->|exchanges, votes, audit| db")
    lines.append("  subgraph sources [Sources]")
    for s in flow.sources:
        lines.append(
            f"    {_node('s_', s.name)}[{_label(f'{s.name} · {s.kind} · {s.data_class}')}]"
        )
    lines.append("  end")
    for s in flow.sources:
        arrow = "passages" if not s.personal else "the asker's own rows"
        lines.append(f"  {_node('s_', s.name)} -->|{_label(arrow)}| concierge")
    lines.append("  subgraph models [Models]")
    for m in flow.models:
        if m.in_chain:
            lines.append(f"    {_node('m_', m.name)}[{_label(f'{m.name} · {m.runs}')}]")
    lines.append("  end")
    for m in flow.models:
        if m.in_chain:
            names = [s.name for s in flow.sources if m.name in s.models] or ["no source text"]
            lines.append(f"  concierge -->|{_label(', '.join(names))}| {_node('m_', m.name)}")
    return "\n".join(lines)


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"


def to_markdown(flow: DataFlow) -> str:
    out = [
        f"# Data flows: {flow.workspace}",
        "",
        f"Generated from `{flow.config_path}` and this process's environment. Every source's "
        "text reaches only people who may read it (its readers, narrowed by a document's "
        "front matter) and only the models that accept its data class.",
        "",
        "```mermaid",
        mermaid(flow),
        "```",
        "",
        "## Sources",
        "",
        _md_row(
            [
                "source",
                "kind",
                "from",
                "class",
                "readers",
                "owner",
                "review",
                "models that may receive it",
            ]
        ),
        _md_row(["---"] * 8),
    ]
    for s in flow.sources:
        frm = s.location + (f" (credentials: ${s.credentials})" if s.credentials else "")
        if s.personal:
            frm += "; rows fetched as the asker, used only in their private answers"
        out.append(
            _md_row(
                [
                    s.name,
                    s.kind,
                    frm,
                    s.data_class,
                    s.readers,
                    s.owner,
                    s.review,
                    ", ".join(s.models) or "none (no model may receive it)",
                ]
            )
        )
    out += [
        "",
        "## Models",
        "",
        _md_row(["model", "provider", "runs at", "accepts", "in the chain", "price"]),
        _md_row(["---"] * 6),
    ]
    for m in flow.models:
        out.append(
            _md_row(
                [
                    m.name,
                    f"{m.provider} ({m.model})",
                    m.runs,
                    ", ".join(m.accepts),
                    "yes" if m.in_chain else "no",
                    m.price,
                ]
            )
        )
    out += [
        "",
        "## What is stored where",
        "",
        _md_row(["what", "where", "holds", "kept", "who can read it"]),
        _md_row(["---"] * 5),
    ]
    for st in flow.stores:
        out.append(_md_row([st.what, st.where, st.holds, st.kept, st.readers]))
    out += ["", "## Outside endpoints called", ""]
    if flow.endpoints:
        out += [f"- {e}: {what}" for e, what in flow.endpoints]
    else:
        out.append("- none: everything runs in this process and its database")
    return "\n".join(out) + "\n"


def to_html(flow: DataFlow) -> str:
    """A standalone page: the same facts, and the diagram drawn by Mermaid in the browser
    (the reader's browser loads mermaid.js; the Mermaid source is shown if it cannot)."""
    esc = html.escape

    def table(head: list[str], rows: list[list[str]]) -> str:
        th = "".join(f"<th>{esc(h)}</th>" for h in head)
        body = "".join(
            "<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows
        )
        return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"

    sources = [
        [
            s.name,
            s.kind,
            s.location + (" (per-person rows)" if s.personal else ""),
            s.data_class,
            s.readers,
            s.owner,
            s.review,
            ", ".join(s.models) or "none",
        ]
        for s in flow.sources
    ]
    models = [
        [
            m.name,
            f"{m.provider} ({m.model})",
            m.runs,
            ", ".join(m.accepts),
            "yes" if m.in_chain else "no",
            m.price,
        ]
        for m in flow.models
    ]
    stores = [[st.what, st.where, st.holds, st.kept, st.readers] for st in flow.stores]
    endpoints = "".join(f"<li>{esc(e)}: {esc(w)}</li>" for e, w in flow.endpoints) or (
        "<li>none: everything runs in this process and its database</li>"
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Data flows: {esc(flow.workspace)}</title>
<style>
body {{ font: 15px/1.5 system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }}
table {{ border-collapse: collapse; width: 100%; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: .35em .6em; text-align: left; vertical-align: top; }}
th {{ background: #f3f3f3; }}
pre.mermaid {{ background: #fafafa; padding: 1em; }}
</style></head><body>
<h1>Data flows: {esc(flow.workspace)}</h1>
<p>Generated from <code>{esc(flow.config_path)}</code>. Every source's text reaches only
people who may read it and only the models that accept its data class.</p>
<pre class="mermaid">{esc(mermaid(flow))}</pre>
<h2>Sources</h2>
{table(["source", "kind", "from", "class", "readers", "owner", "review", "models"], sources)}
<h2>Models</h2>
{table(["model", "provider", "runs at", "accepts", "in the chain", "price"], models)}
<h2>What is stored where</h2>
{table(["what", "where", "holds", "kept", "who can read it"], stores)}
<h2>Outside endpoints called</h2>
<ul>{endpoints}</ul>
<script type="module">
import mermaid from "https://cdn.jsdelivr.net/npm/mermaid@11/dist/mermaid.esm.min.mjs";
mermaid.initialize({{ startOnLoad: true }});
</script>
</body></html>
"""
