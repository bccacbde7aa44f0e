"""How long to wait for a model's first token before hedging: its observed p95.

Each model's recent first-token latencies (seconds from the request to the first word, a
missed first-token deadline counted as the deadline) are kept in a rolling window in this
process. The hedge delay is their 95th percentile, never above the configured
``hedge_after_s``, which is also the delay until a model has enough history. Runs on the
event loop only (no lock needed).
"""

from __future__ import annotations

import math
from collections import deque

WINDOW = 50  # recent attempts per model
MIN_SAMPLES = 5  # fewer than this: the configured delay
FLOOR_S = 0.05  # never hedge sooner than this, however fast a model has been


class FirstTokenWindow:
    def __init__(self, size: int = WINDOW, min_samples: int = MIN_SAMPLES) -> None:
        self.size = size
        self.min_samples = min_samples
        self._samples: dict[str, deque[float]] = {}

    def add(self, model: str, seconds: float) -> None:
        self._samples.setdefault(model, deque(maxlen=self.size)).append(max(0.0, seconds))

    def p95(self, model: str) -> float | None:
        samples = self._samples.get(model)
        if not samples or len(samples) < self.min_samples:
            return None
        ordered = sorted(samples)
        return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]

    def hedge_delay(self, model: str, cap: float) -> float:
        """The configured delay ``cap`` until ``model`` has history, then its p95 (capped)."""
        observed = self.p95(model)
        return cap if observed is None else max(FLOOR_S, min(cap, observed))
