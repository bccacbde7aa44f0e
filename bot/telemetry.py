"""What an operator sees: Prometheus metrics, logs that carry each question's request id (JSON
with ``LOG_FORMAT=json``), and OpenTelemetry spans, one per pipeline step, exported over OTLP
only when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set.

Metric names follow the OpenTelemetry GenAI conventions where they fit. Every helper here is
cheap (a counter increment, a contextvar read) and never raises into the answer path.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from typing import Any

from opentelemetry import trace
from prometheus_client import Counter, Gauge, Histogram

tracer = trace.get_tracer("concierge")

_SECONDS = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60)
QUESTIONS = Counter(
    "concierge_questions_total",
    "Questions answered, by surface and outcome",
    ["surface", "outcome"],
)
TTFT = Histogram(
    "concierge_time_to_first_token_seconds",
    "From receiving the question to the first answer text shown",
    buckets=_SECONDS,
)
ANSWER = Histogram(
    "concierge_answer_seconds",
    "From receiving the question to the end of the answer",
    buckets=_SECONDS,
)
TOKENS = Counter(
    "gen_ai_client_token_usage",
    "Tokens used by model calls",
    ["gen_ai_request_model", "gen_ai_token_type"],
)
COST = Counter("concierge_cost_usd_total", "Cost of model calls in USD", ["model"])
ATTEMPTS = Counter(
    "concierge_model_attempts_total", "Model attempts by how they ended", ["model", "outcome"]
)
SLACK_CALLS = Counter(
    "concierge_slack_api_calls_total", "Slack Web API calls", ["method", "status"]
)
CONNECTOR_SECONDS = Histogram(
    "concierge_connector_seconds",
    "Time to search one source",
    ["source"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5),
)
CONNECTOR_ERRORS = Counter(
    "concierge_connector_errors_total", "Searches of a source that failed", ["source"]
)
FEEDBACK = Counter("concierge_feedback_total", "Votes on answers", ["value"])
SLACK_DELIVERIES = Counter(
    "concierge_slack_deliveries_total",
    "Slack deliveries de-duplicated, by key kind (event, msg, sig), outcome (claimed: first "
    "seen, answered here; duplicate: a retry or a copy another instance has) and where the "
    "claim was made (redis, database, or local during an outage)",
    ["kind", "outcome", "where"],
)
ANSWERS_ACTIVE = Gauge(
    "concierge_answers_active",
    "Answers being worked on (at most CONCIERGE_MAX_ANSWERS per process)",
)
ANSWERS_QUEUED = Gauge(
    "concierge_answers_queued",
    "Questions acknowledged and claimed, waiting for a free answer slot",
)
ACCESS_DENIED = Counter(
    "concierge_access_denied_total", "Questions refused for want of any readable source"
)

# How an attempt's recorded outcome maps to the metric's outcome label.
_ATTEMPT_LABEL = {
    "answered": "answered",
    "skipped": "skipped",
    "timeout": "timeout",
    "failed": "error",
    "incomplete": "error",
    "refused": "error",
}


def record_exchange(result: Any) -> None:
    """Count one finished exchange (an ExchangeResult): outcome, latencies, tokens, cost and
    how each model attempt ended."""
    try:
        QUESTIONS.labels(result.surface, result.outcome).inc()
        if result.ttft_ms is not None:
            TTFT.observe(result.ttft_ms / 1000)
        ANSWER.observe(result.total_ms / 1000)
        if result.outcome == "refused" and result.error == "no_access":
            ACCESS_DENIED.inc()
        for a in result.attempts:
            if a.outcome == "cancelled":
                label = "hedge_lost" if a.error == "lost_hedge" else "error"
            elif a.error == "stalled":  # went silent mid-answer; the next model took over
                label = "stalled"
            elif a.outcome in ("failed", "timeout") and a.model != result.model:
                label = "fallback" if result.model else _ATTEMPT_LABEL[a.outcome]
            else:
                label = _ATTEMPT_LABEL.get(a.outcome, "error")
            ATTEMPTS.labels(a.model, label).inc()
            if a.input_tokens:
                TOKENS.labels(a.model, "input").inc(a.input_tokens)
            if a.output_tokens:
                TOKENS.labels(a.model, "output").inc(a.output_tokens)
            if a.cost_usd:
                COST.labels(a.model).inc(a.cost_usd)
    except Exception:  # metrics never take an answer down
        logging.getLogger("concierge.telemetry").debug("metrics failed", exc_info=True)


# -- logs -----------------------------------------------------------------------------------

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "concierge_request_id", default=None
)


class RequestIdFilter(logging.Filter):
    """Puts the current question's request id on every record written while answering it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get() or "-"
        return True


def configure_logging(level: int, fmt: str) -> None:
    """``fmt`` text (default) or json: one JSON object a line, each with its request id."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    if fmt.lower() == "json":
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s")
        )
    handler.set_name("concierge")
    root = logging.getLogger()
    root.setLevel(level)
    # Like logging.basicConfig: where someone else already handles the root logger (a test's
    # log capture), leave it to them; a second configuration replaces only our own handler.
    if any(h.get_name() != "concierge" for h in root.handlers):
        return
    root.handlers[:] = [handler]


# -- traces ---------------------------------------------------------------------------------

_configured = False


def configure_tracing(otlp_endpoint: str | None) -> None:
    """Export spans over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is set (the exporter reads
    the standard OTEL_* variables itself); otherwise spans cost almost nothing and go nowhere."""
    global _configured
    if _configured or not otlp_endpoint:
        return
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "concierge"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _configured = True
