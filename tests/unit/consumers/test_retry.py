"""Back-off: exponential, capped, jittered within its step; and a last attempt."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.retry import RetryPolicy


@settings(max_examples=50, derandomize=True)
@given(
    attempts=st.integers(min_value=1, max_value=40),
    base=st.floats(min_value=0.01, max_value=10),
    cap=st.floats(min_value=0.01, max_value=600),
    draw=st.floats(min_value=0, max_value=1),
)
def test_each_wait_lies_in_the_upper_half_of_its_capped_step(
    attempts: int, base: float, cap: float, draw: float
) -> None:
    policy = RetryPolicy(8, base, cap, uniform=lambda low, high: low + (high - low) * draw)
    step = min(cap, base * 2 ** (attempts - 1))
    assert step / 2 <= policy.delay(attempts) <= step * (1 + 1e-9)


def test_steps_double_until_the_cap() -> None:
    policy = RetryPolicy(8, 1.0, 10.0, uniform=lambda low, high: high)
    assert [policy.delay(n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]


def test_real_jitter_spreads_mailers_that_failed_together() -> None:
    policy = RetryPolicy(8, 1.0, 60.0)
    assert len({policy.delay(5) for _ in range(20)}) > 1


def test_the_last_attempt_is_the_max_and_the_horizon_sums_every_step() -> None:
    policy = RetryPolicy(4, 2.0, 5.0)
    assert [policy.exhausted(n) for n in (1, 3, 4, 5)] == [False, False, True, True]
    assert policy.horizon() == 2 + 4 + 5 + 5
