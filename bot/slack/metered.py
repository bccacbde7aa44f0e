"""The Slack Web API client, counted: every call by method and result, for
``concierge_slack_api_calls_total`` (rate limits and errors are visible per method)."""

from __future__ import annotations

from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bot.telemetry import SLACK_CALLS


class MeteredWebClient(AsyncWebClient):
    async def api_call(self, api_method: str, **kwargs: Any) -> AsyncSlackResponse:
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
