"""When a Slack request arrived at our endpoint, carried in Bolt's request context.

Times a person sees (the footer) and the record keeps (``ttft_ms``, ``total_ms``) run from
this moment, before any Slack look-up (users.info, conversations.info) or database work: with
Slack slow, the person waited for those too. HTTP mode stamps the request as the first thing
its handler does; Socket Mode (and anything else) is stamped by the first middleware.
Monotonic clock (``time.perf_counter``), as ``Question.received_at``.
"""

from __future__ import annotations

import time
from collections.abc import MutableMapping
from typing import Any

KEY = "concierge_received_at"


def stamp(context: MutableMapping[str, Any], at: float | None = None) -> None:
    """Note the arrival time unless it is noted already (the earliest stamp wins)."""
    if not isinstance(context.get(KEY), float):
        context[KEY] = at if at is not None else time.perf_counter()


def arrived(context: MutableMapping[str, Any] | None) -> float:
    """The arrival time of the request ``context`` belongs to (now, when it was not noted)."""
    value = context.get(KEY) if context is not None else None
    return value if isinstance(value, float) else time.perf_counter()
