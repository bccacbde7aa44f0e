"""The Slack and OpenAI-compatible stand-ins in a process of their own, for benchmarks that
measure a separate ``app.py serve`` without sharing its event loop or CPU time.

    python -m support.standins.serve [--users 1000] [--first-token-s 0.3] [--token-s 0.02]
                                     [--tokens 40] [--slack-delay users.info=0.2 ...]

Prints one JSON line once listening: ``{"slack": URL, "openai": URL, "control": URL}``.
The control URL answers ``GET /model-requests`` (each chat completion request: its arrival
on the monotonic clock, which every process on the machine shares, and its last message),
``GET /slack-calls`` (method names, in order), ``GET /slack-peak`` (the most calls of each
method answered at once) and ``POST /reset``. Stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal

from aiohttp import web

from support.standins import openai_api, slack_api


def parse_delays(values: list[str]) -> dict[str, float]:
    delays: dict[str, float] = {}
    for value in values:
        method, _, seconds = value.partition("=")
        delays[method] = float(seconds)
    return delays


async def run(args: argparse.Namespace) -> None:
    slack = slack_api.SlackStandIn(delays=parse_delays(args.slack_delay))
    for i in range(args.users):
        slack.add_user(f"U{i:04d}", f"person{i}@acme.test")
    slack.channels = {"C1": {"id": "C1", "name": "general"}}
    words = " ".join(f"word{i}" for i in range(max(1, args.tokens - 1)))
    model = openai_api.OpenAIStandIn(
        reply=f"{words} [1]", first_token_s=args.first_token_s, token_s=args.token_s
    )

    async def model_requests(_: web.Request) -> web.Response:
        out = []
        for r in model.requests:
            messages = r["body"].get("messages") or [{}]
            out.append({"at": r["at"], "last": str(messages[-1].get("content", ""))})
        return web.json_response(out)

    async def slack_calls(_: web.Request) -> web.Response:
        return web.json_response([m for m, _ in slack.calls])

    async def slack_peak(_: web.Request) -> web.Response:
        return web.json_response(slack.peak)

    async def reset(_: web.Request) -> web.Response:
        model.requests.clear()
        slack.calls.clear()
        slack.messages.clear()
        slack.peak.clear()
        return web.json_response({"ok": True})

    control = web.Application()
    control.router.add_get("/model-requests", model_requests)
    control.router.add_get("/slack-calls", slack_calls)
    control.router.add_get("/slack-peak", slack_peak)
    control.router.add_post("/reset", reset)
    control_runner = web.AppRunner(control, access_log=None)
    await control_runner.setup()
    site = web.TCPSite(control_runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    runners = [await slack_api.start(slack), await openai_api.start(model), control_runner]
    print(
        json.dumps(
            {"slack": slack.url, "openai": model.url, "control": f"http://127.0.0.1:{port}"}
        ),
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for runner in runners:
        await runner.cleanup()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--first-token-s", type=float, default=0.3)
    ap.add_argument("--token-s", type=float, default=0.02)
    ap.add_argument("--tokens", type=int, default=40)
    ap.add_argument("--slack-delay", action="append", default=[], metavar="METHOD=SECONDS")
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()
