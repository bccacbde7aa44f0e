"""The limits step: a per-person question rate, in-process and shared through Redis."""

from __future__ import annotations

import json

from bot.core.limits import LocalRateLimiter, RedisRateLimiter


async def test_local_rate_limit_per_person() -> None:
    limiter = LocalRateLimiter(per_minute=3)
    assert [(await limiter.check("eve")).allowed for _ in range(4)] == [True, True, True, False]
    assert (await limiter.check("sam")).allowed
    denied = await limiter.check("eve")
    assert not denied.allowed and 0 < denied.retry_after_s <= 60


async def test_redis_rate_limit_is_shared_between_instances(redis_client) -> None:
    prefix = redis_client.test_prefix
    a = RedisRateLimiter(redis_client, prefix, per_minute=2)
    b = RedisRateLimiter(redis_client, prefix, per_minute=2)
    assert (await a.check("eve")).allowed
    assert (await b.check("eve")).allowed
    assert not (await a.check("eve")).allowed
    assert all(k.decode().startswith(prefix) for k in redis_client.scan_iter(match=prefix + "*"))


async def test_rate_limited_question_is_refused_in_process(env, workspace) -> None:
    from bot.core.sinks import CollectingSink
    from bot.core.types import Question
    from bot.runtime import build_runtime
    from bot.settings import Settings

    text = workspace.config.read_text().replace(
        "questions_per_minute: 1000", "questions_per_minute: 1"
    )
    workspace.config.write_text(text)
    rt = await build_runtime(Settings())
    try:
        q = "Where do I submit expenses?"
        first = await rt.pipeline.ask(Question(q, "eve@canary.test"), CollectingSink())
        second = await rt.pipeline.ask(Question(q, "eve@canary.test"), CollectingSink())
        other = await rt.pipeline.ask(Question(q, "sam@canary.test"), CollectingSink())
    finally:
        rt.close()
    assert first.outcome == "answered" and other.outcome == "answered"
    assert second.outcome == "refused" and second.error == "rate_limited"
    assert "try again in" in second.answer and second.ttft_ms is not None


def test_rate_limit_shared_through_redis_across_processes(
    cli, workspace, monkeypatch, redis_client
) -> None:
    text = workspace.config.read_text().replace(
        "questions_per_minute: 1000", "questions_per_minute: 1"
    )
    workspace.config.write_text(text)
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("CONCIERGE_REDIS_PREFIX", redis_client.test_prefix)
    first = json.loads(cli("ask", "Where do I submit expenses?", "--json").out)
    assert first["outcome"] == "answered"
    second = json.loads(cli("ask", "Where do I submit expenses?", "--json").out)
    assert second["outcome"] == "refused" and "try again in" in second["answer"]
