"""The per-credential token bucket, driven by a fake clock."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.identity.rate_limit import Decision, TokenBucketLimiter, retry_after_header


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_burst_then_refusal_with_retry_after(clock: FakeClock) -> None:
    limiter = TokenBucketLimiter(rate_per_s=2.0, burst=3, clock=clock)
    remaining = [limiter.take("a").remaining for _ in range(3)]
    assert remaining == pytest.approx([2.0, 1.0, 0.0])
    refused = limiter.take("a")
    assert not refused.allowed
    assert refused.retry_after_s == pytest.approx(0.5)  # one token at 2 per second
    assert refused.remaining == pytest.approx(0.0)
    # A refusal costs nothing: waiting the advertised time is enough.
    clock.advance(0.5)
    assert limiter.take("a").allowed
    assert not limiter.take("a").allowed


def test_allowed_decision_has_no_wait(clock: FakeClock) -> None:
    limiter = TokenBucketLimiter(rate_per_s=1.0, burst=2, clock=clock)
    assert limiter.take("a") == Decision(allowed=True, retry_after_s=0.0, remaining=1.0)


def test_partial_refill_shortens_retry_after(clock: FakeClock) -> None:
    limiter = TokenBucketLimiter(rate_per_s=4.0, burst=4, clock=clock)
    for _ in range(4):
        assert limiter.take("a").allowed
    clock.advance(0.125)  # half a token
    refused = limiter.take("a")
    assert not refused.allowed
    assert refused.remaining == pytest.approx(0.5)
    assert refused.retry_after_s == pytest.approx(0.125)
    expensive = limiter.take("a", cost=3.0)
    assert not expensive.allowed
    assert expensive.retry_after_s == pytest.approx(2.5 / 4)


def test_refill_is_continuous_and_capped_at_burst(clock: FakeClock) -> None:
    limiter = TokenBucketLimiter(rate_per_s=10.0, burst=5, clock=clock)
    for _ in range(5):
        limiter.take("a")
    clock.advance(0.25)
    assert limiter.take("a", cost=0.0).remaining == pytest.approx(2.5)
    clock.advance(3600)
    assert limiter.take("a").remaining == pytest.approx(4.0)  # capped at 5, minus this take
    assert limiter.take("a", cost=4.0).allowed
    assert not limiter.take("a", cost=0.5).allowed


@pytest.mark.parametrize("start", [0.0, 1e6, 1e9])
def test_whole_burst_is_available_late_in_a_process_life(start: float) -> None:
    # Float rounding on large monotonic clock values must not eat into the burst.
    clock = FakeClock(start)
    limiter = TokenBucketLimiter(rate_per_s=10.0, burst=5, clock=clock)
    assert all(limiter.take("a").allowed for _ in range(5))
    assert not limiter.take("a").allowed
    clock.advance(0.1)
    assert limiter.take("a").allowed


@given(
    rate=st.floats(0.01, 1000.0),
    burst=st.integers(1, 50),
    start=st.floats(0.0, 1e7),
    steps=st.lists(st.tuples(st.floats(0.0, 5.0), st.floats(0.0, 1.0)), max_size=30),
)
def test_waiting_the_advertised_time_is_enough(
    rate: float, burst: int, start: float, steps: list[tuple[float, float]]
) -> None:
    clock = FakeClock(start)
    limiter = TokenBucketLimiter(rate_per_s=rate, burst=burst, clock=clock)
    for wait, fraction in steps:
        clock.advance(wait)
        cost = fraction * burst
        decision = limiter.take("a", cost=cost)
        assert 0.0 <= decision.remaining <= burst
        if not decision.allowed:
            assert decision.retry_after_s > 0
            clock.advance(decision.retry_after_s)
            assert limiter.take("a", cost=cost).allowed


def test_keys_are_independent(clock: FakeClock) -> None:
    limiter = TokenBucketLimiter(rate_per_s=1.0, burst=1, clock=clock)
    assert limiter.take("a").allowed
    assert not limiter.take("a").allowed
    assert limiter.take("b").allowed
    assert not limiter.take("b").allowed
    assert len(limiter) == 2


@pytest.mark.parametrize("rate", [0.0, -1.0])
def test_unlimited(clock: FakeClock, rate: float) -> None:
    limiter = TokenBucketLimiter(rate_per_s=rate, burst=0, clock=clock)
    for _ in range(1000):
        decision = limiter.take("a", cost=5.0)
        assert decision.allowed
        assert decision.retry_after_s == 0.0
    assert decision.remaining == math.inf
    assert len(limiter) == 0


def test_full_buckets_are_dropped_first(clock: FakeClock) -> None:
    limiter = TokenBucketLimiter(rate_per_s=1.0, burst=2, clock=clock, max_keys=3)
    limiter.take("idle")
    clock.advance(1.0)  # "idle" is full again from here on
    limiter.take("busy-1", cost=2.0)
    limiter.take("busy-2", cost=2.0)
    limiter.take("new")  # four keys: the full one goes, not the oldest drained one
    assert len(limiter) == 3
    assert not limiter.take("busy-1").allowed
    assert not limiter.take("busy-2", cost=2.0).allowed
    assert len(limiter) == 3


def test_oldest_buckets_go_when_none_is_full(clock: FakeClock) -> None:
    limiter = TokenBucketLimiter(rate_per_s=1.0, burst=1, clock=clock, max_keys=3)
    for key in ("a", "b", "c"):
        limiter.take(key)
    limiter.take("a")  # refused, but still a use: "b" is now the least recently used
    limiter.take("d")
    assert len(limiter) == 3
    assert limiter.take("b").allowed  # forgotten, so it starts again with a full bucket
    assert not limiter.take("a").allowed
    assert not limiter.take("d").allowed


def test_memory_stays_bounded(clock: FakeClock) -> None:
    limiter = TokenBucketLimiter(rate_per_s=1.0, burst=5, clock=clock, max_keys=100)
    for i in range(10_000):
        limiter.take(f"key-{i}", cost=5.0)
        clock.advance(0.001)
        assert len(limiter) <= 100
    # Once everything has refilled, new keys sweep all the full buckets away.
    clock.advance(10.0)
    for i in range(20):
        limiter.take(f"late-{i}")
    assert len(limiter) == 20


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate_per_s": 1.0, "burst": 0}, "burst"),
        ({"rate_per_s": math.nan, "burst": 1}, "rate"),
        ({"rate_per_s": math.inf, "burst": 1}, "rate"),
        ({"rate_per_s": 1.0, "burst": 1, "max_keys": 0}, "max_keys"),
    ],
)
def test_bad_configuration(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TokenBucketLimiter(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("cost", [-1.0, math.nan, math.inf, 3.5])
def test_bad_costs(clock: FakeClock, cost: float) -> None:
    limiter = TokenBucketLimiter(rate_per_s=1.0, burst=3, clock=clock)
    with pytest.raises(ValueError, match="cost"):
        limiter.take("a", cost=cost)
    assert len(limiter) == 0


@pytest.mark.parametrize(
    ("seconds", "header"),
    [(0.0, "1"), (-3.0, "1"), (0.01, "1"), (1.0, "1"), (1.0001, "2"), (59.5, "60")],
)
def test_retry_after_header(seconds: float, header: str) -> None:
    assert retry_after_header(seconds) == header


@pytest.mark.parametrize("seconds", [math.nan, math.inf])
def test_retry_after_header_needs_a_finite_time(seconds: float) -> None:
    with pytest.raises(ValueError):
        retry_after_header(seconds)
