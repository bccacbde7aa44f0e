"""The Slack Web API client, counted and paced.

Every call is counted by method and result, for ``concierge_slack_api_calls_total`` (rate
limits and errors are visible per method). Rate limits have one owner, the workspace's
``Pacer`` (bot/slack/pacing.py): a call waits while its method is paused, and a 429 pauses
the method for every caller until its Retry-After has passed, then the call is made again.
slack_sdk's own RateLimitErrorRetryHandler is not installed, and no caller retries a 429.
"""

from __future__ import annotations

import time
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bot.slack.pacing import Pacer
from bot.telemetry import SLACK_CALLS

# The longest one call waits out 429s in all; past it the 429 is raised. Long enough for
# any Retry-After Slack sends for the per-minute tiers, so a final write arrives once the
# limit lifts.
RATE_LIMIT_PATIENCE_S = 180.0


def retry_after(exc: SlackApiError) -> float | None:
    """Seconds Slack asked us to wait, when ``exc`` is a 429."""
    if exc.response is not None and exc.response.status_code == 429:
        headers = exc.response.headers or {}
        return float(headers.get("Retry-After", headers.get("retry-after", 1)))
    return None


class MeteredWebClient(AsyncWebClient):
    def __init__(self, *args: Any, pacer: Pacer | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pacer = pacer or Pacer()

    async def api_call(self, api_method: str, **kwargs: Any) -> AsyncSlackResponse:
        deadline = time.monotonic() + RATE_LIMIT_PATIENCE_S
        while True:
            await self.pacer.unpaused(api_method)
            try:
                return await self._counted(api_method, **kwargs)
            except SlackApiError as exc:
                wait = retry_after(exc)
                if wait is None:
                    raise
                if not self.pacer.waits_out(api_method) or time.monotonic() + wait > deadline:
                    self.pacer.pause(api_method, wait)
                    raise
                # (never a busy loop, whatever the header says)
                self.pacer.pause(api_method, max(wait, 0.05))

    async def _counted(self, api_method: str, **kwargs: Any) -> AsyncSlackResponse:
        try:
            response = await super().api_call(api_method, **kwargs)
        except SlackApiError as exc:
            data = exc.response.data if exc.response is not None else None
            error = data.get("error") if isinstance(data, dict) else None
            status = exc.response.status_code if exc.response is not None else 0
            SLACK_CALLS.labels(api_method, str(error or status)).inc()
            raise
        except Exception as exc:
            SLACK_CALLS.labels(api_method, exc.__class__.__name__).inc()
            raise
        SLACK_CALLS.labels(api_method, "ok").inc()
        return response
