"""Exponential delay with jitter between retries."""

import random

__all__ = ["Backoff"]


class Backoff:
    """Exponential delay with jitter between retries (by default 0.2 s .. 10 s)."""

    def __init__(self, *, first_s: float = 0.2, cap_s: float = 10.0) -> None:
        self._first_s = first_s
        self._cap_s = cap_s
        self.attempt = 0

    def next_delay(self) -> float:
        self.attempt += 1
        ceiling = min(self._cap_s, self._first_s * 2 ** (self.attempt - 1))
        jitter = random.uniform(0, ceiling / 2)  # noqa: S311 - spreads retries, not security
        return float(ceiling / 2 + jitter)

    def reset(self) -> None:
        self.attempt = 0
