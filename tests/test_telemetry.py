"""What an operator sees: spans per pipeline step in order, Prometheus counters and
histograms after known traffic (also scraped from a running server), and JSON logs whose
lines written while answering carry the question's request id."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY

from bot.core.sinks import CollectingSink
from bot.core.types import Audience, Question
from bot.runtime import build_runtime
from bot.settings import Settings
from tests.slack_helpers import dm

ROOT = Path(__file__).resolve().parents[1]
_EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="session")
def provider() -> TracerProvider:
    """One SDK provider for the test process (OpenTelemetry allows setting it once)."""
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(_EXPORTER))
    trace.set_tracer_provider(tp)
    return tp


@pytest.fixture
def spans(provider: TracerProvider) -> Iterator[InMemorySpanExporter]:
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_one_span_per_step_in_pipeline_order_and_metrics_counted(
    env: dict[str, str], spans: InMemorySpanExporter
) -> None:
    runtime = await build_runtime(Settings())
    before = {
        "answered": sample("concierge_questions_total", {"surface": "cli", "outcome": "answered"}),
        "ttft": sample("concierge_time_to_first_token_seconds_count"),
        "offline": sample(
            "concierge_model_attempts_total", {"model": "offline", "outcome": "answered"}
        ),
        "handbook": sample("concierge_connector_seconds_count", {"source": "handbook"}),
        "denied": sample("concierge_access_denied_total"),
    }
    try:
        result = await runtime.pipeline.ask(
            Question("Where do I submit expenses?", "eve@canary.test"), CollectingSink()
        )
        await runtime.pipeline.ask(
            Question("Where do I submit expenses?", "gus@partner.test", audience=Audience()),
            CollectingSink(),
        )
    finally:
        runtime.close()
    assert result.outcome == "answered"
    names = [
        s.name
        for s in spans.get_finished_spans()
        if s.context.trace_id
        == (
            next(
                x
                for x in spans.get_finished_spans()
                if x.name == "concierge.question"
                and x.attributes["concierge.exchange_id"] == result.exchange_id
            ).context.trace_id
        )
    ]
    steps = [n for n in names if n.startswith("concierge.") and n != "concierge.question"]
    assert steps == [
        "concierge.identity",
        "concierge.limits",
        "concierge.access",
        "concierge.small_talk",
        "concierge.verified",
        "concierge.retrieve",
        "concierge.prompt",
        "concierge.generate",
        "concierge.emit",
        "concierge.record",
    ]
    chat = [s for s in spans.get_finished_spans() if s.name.startswith("chat ")]
    assert chat and chat[0].attributes["gen_ai.system"] == "offline"
    assert (
        sample("concierge_questions_total", {"surface": "cli", "outcome": "answered"})
        >= before["answered"] + 1
    )
    assert sample("concierge_time_to_first_token_seconds_count") >= before["ttft"] + 1
    assert (
        sample("concierge_model_attempts_total", {"model": "offline", "outcome": "answered"})
        >= before["offline"] + 1
    )
    assert sample("concierge_connector_seconds_count", {"source": "handbook"}) >= (
        before["handbook"] + 1
    )


async def test_a_running_server_exposes_its_counters(slack: Any) -> None:
    await slack.event(dm("UEVE", "Where do I submit expenses?", "880.1"))
    await slack.settle()
    async with slack.session.get(slack.url + "/metrics") as response:
        assert response.status == 200
        text = await response.text()
    assert 'concierge_questions_total{outcome="answered",surface="slack"}' in text
    assert 'concierge_slack_api_calls_total{method="users.info",status="ok"}' in text
    assert "concierge_answer_seconds_bucket" in text


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_json_logs_carry_the_request_id_of_the_question(env: dict[str, str]) -> None:
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "app.py"),
            "ask",
            "Where do I submit expenses?",
            "--as",
            "eve@canary.test",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "LOG_FORMAT": "json", "LOG_LEVEL": "DEBUG"},
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    exchange_id = json.loads(run.stdout)["exchange_id"]
    lines = [json.loads(line) for line in run.stderr.splitlines() if line.strip()]
    assert lines and all({"time", "level", "logger", "message"} <= set(x) for x in lines)
    searched = [x for x in lines if x["logger"] == "concierge.connectors"]
    assert searched and all(x["request_id"] == exchange_id for x in searched)


async def test_the_socket_mode_listener_serves_metrics_health_and_readiness() -> None:
    import socket

    import aiohttp

    from bot.ops_http import start_metrics_server

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])

    async def not_ready() -> tuple[bool, dict[str, Any]]:
        return False, {"ok": False, "degraded": ["redis"]}

    runner = await start_metrics_server("127.0.0.1", port, lambda: {"ok": True}, not_ready)
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/metrics") as r:
                assert r.status == 200 and "concierge_questions_total" in await r.text()
            async with session.get(f"http://127.0.0.1:{port}/healthz") as r:
                assert r.status == 200 and (await r.json())["ok"] is True
            async with session.get(f"http://127.0.0.1:{port}/readyz") as r:
                assert r.status == 503 and (await r.json())["degraded"] == ["redis"]
    finally:
        await runner.cleanup()
