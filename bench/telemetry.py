"""What metrics, logs and tracing add to one question (budget: ≤ 2 ms p95 per question).

Per question the answer path does: one request-id context switch, 11 spans (the question,
nine steps, one model attempt) with their attributes, the metrics of one recorded exchange
(two attempts), and a few log lines through the request-id filter. This times exactly that,
with the OpenTelemetry SDK installed (spans built and processed by a batch processor with an
exporter that drops them, as with an OTLP endpoint set) and JSON logging to /dev/null.

    .venv/bin/python -m bench.telemetry [--n 5000]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import time
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from bench.recording import sample_result
from bot import telemetry

STEPS = ("identity", "limits", "access", "verified", "retrieve", "prompt", "generate", "emit")


class Drop(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def one_question(log: logging.Logger, result: object) -> None:
    tracer = telemetry.tracer
    token = telemetry.request_id.set("bench")
    try:
        with tracer.start_as_current_span("concierge.question") as q:
            q.set_attribute("concierge.exchange_id", "bench")
            for step in STEPS:
                with tracer.start_as_current_span(f"concierge.{step}") as span:
                    span.set_attribute("concierge.outcome", "answered")
                    if step == "generate":
                        with tracer.start_as_current_span("chat offline") as chat:
                            chat.set_attribute("gen_ai.system", "offline")
                            chat.set_attribute("gen_ai.usage.input_tokens", 900)
            log.debug("searched %s: %d passages", "handbook", 6)
            log.info("answered in %.1f ms", 12.3)
            with tracer.start_as_current_span("concierge.record"):
                pass
            telemetry.record_exchange(result)
    finally:
        telemetry.request_id.reset(token)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=5000)
    args = parser.parse_args()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Drop()))
    trace.set_tracer_provider(provider)
    with open(os.devnull, "w") as sink:
        telemetry.configure_logging(logging.INFO, "json")
        handler = logging.getLogger().handlers[0]
        assert isinstance(handler, logging.StreamHandler)
        handler.setStream(sink)
        log = logging.getLogger("concierge.bench")
        result = sample_result(0)
        for _ in range(200):  # warm up
            one_question(log, result)
        times = []
        for _ in range(args.n):
            started = time.perf_counter()
            one_question(log, result)
            times.append((time.perf_counter() - started) * 1000)
    provider.shutdown()
    times.sort()
    p50 = statistics.median(times)
    p95 = times[int(0.95 * (len(times) - 1))]
    p99 = times[int(0.99 * (len(times) - 1))]
    print(
        f"telemetry per question over {args.n}: p50 {p50:.3f} ms, p95 {p95:.3f} ms, "
        f"p99 {p99:.3f} ms (budget p95 ≤ 2 ms)"
    )


if __name__ == "__main__":
    main()
