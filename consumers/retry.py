"""When to try a mail again: exponential back-off with jitter, and when to stop trying."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

_system_random = random.SystemRandom()


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int
    base: float  # seconds before the second attempt (before jitter)
    cap: float  # no single wait is longer
    # "Equal jitter": half the step is fixed, half random, so mailers that failed together
    # spread out without any retry coming much earlier than its step.
    uniform: Callable[[float, float], float] = field(default=_system_random.uniform)

    def delay(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt (1-based)."""
        step = min(self.cap, self.base * 2.0 ** max(0, attempts - 1))
        return step / 2 + self.uniform(0, step / 2)

    def exhausted(self, attempts: int) -> bool:
        return attempts >= self.max_attempts

    def horizon(self) -> float:
        """The longest a mail can keep being retried, in seconds."""
        return sum(min(self.cap, self.base * 2.0**n) for n in range(self.max_attempts))
