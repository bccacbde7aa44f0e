"""The stand-ins the tests use (Slack Web API, OpenAI-compatible chat), each run as a process
of its own, so that a benchmark's own load never slows the services it measures against:

    python -m bench.standin_process slack
    python -m bench.standin_process openai --first-token-s 0.3 --token-s 0.02 --tokens 40

The first line printed is the stand-in's base URL; it serves until SIGTERM. The Slack
stand-in also answers ``GET /_stats``: the answers started per thread (chat.startStream or
chat.postMessage, keyed ``channel/thread_ts``) and the calls per method.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections import Counter

from aiohttp import web

from support.standins import openai_api
from support.standins.openai_api import OpenAIStandIn
from support.standins.slack_api import SlackStandIn

ANSWER_METHODS = ("chat.startStream", "chat.postMessage")


def slack_stats(api: SlackStandIn) -> dict[str, dict[str, int]]:
    answers: Counter[str] = Counter()
    methods: Counter[str] = Counter()
    for method, params in api.calls:
        methods[method] += 1
        if method in ANSWER_METHODS:
            answers[f"{params.get('channel')}/{params.get('thread_ts')}"] += 1
    return {"answers": dict(answers), "methods": dict(methods)}


async def serve_slack(users: int) -> web.AppRunner:
    api = SlackStandIn()
    for n in range(users):
        api.add_user(f"UB{n:03d}", f"bench{n:03d}@acme.test")

    async def stats(_: web.Request) -> web.Response:
        return web.json_response(slack_stats(api))

    app = web.Application()
    app.router.add_post("/api/{method}", api.handle)
    app.router.add_get("/api/{method}", api.handle)
    app.router.add_get("/_stats", stats)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    api.url = f"http://127.0.0.1:{port}/api/"
    print(api.url, flush=True)
    return runner


async def serve_openai(first_token_s: float, token_s: float, tokens: int) -> web.AppRunner:
    words = " ".join(f"word{n}" for n in range(tokens - 1))
    standin = OpenAIStandIn(reply=f"{words} [1]", first_token_s=first_token_s, token_s=token_s)
    runner = await openai_api.start(standin)
    print(standin.url, flush=True)
    return runner


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=("slack", "openai"))
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--first-token-s", type=float, default=0.3)
    parser.add_argument("--token-s", type=float, default=0.02)
    parser.add_argument("--tokens", type=int, default=40)
    args = parser.parse_args()
    if args.kind == "slack":
        runner = await serve_slack(args.users)
    else:
        runner = await serve_openai(args.first_token_s, args.token_s, args.tokens)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
