"""An outage of a dependency (the database, Redis), as one small state machine shared by
both: after a failure, calls are skipped until a retry time that backs off from 1 s to 15 s;
the first success clears it. The start and end of an outage are logged once each."""

from __future__ import annotations

import logging
import threading
import time

MAX_BACKOFF_S = 15.0


class Outage:
    def __init__(self, log: logging.Logger, down_message: str, back_message: str) -> None:
        """``down_message`` gets the reason (``%s``); ``back_message`` the seconds (``%.1f``)."""
        self._log = log
        self._down_message = down_message
        self._back_message = back_message
        self._lock = threading.Lock()
        self.down_since: float | None = None
        self._retry_at = 0.0
        self._backoff = 0.0

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def should_try(self) -> bool:
        return self.down_since is None or time.monotonic() >= self._retry_at

    def failed(self, why: str) -> None:
        with self._lock:
            now = time.monotonic()
            if self.down_since is None:
                self.down_since = now
                self._backoff = 1.0
                self._log.error(self._down_message, why)
            else:
                self._backoff = min(MAX_BACKOFF_S, self._backoff * 2)
            self._retry_at = now + self._backoff

    def ok(self) -> None:
        if self.down_since is None:
            return
        with self._lock:
            if self.down_since is not None:
                self._log.warning(self._back_message, time.monotonic() - self.down_since)
            self.down_since = None
