"""Per-credential request limiting with a continuously refilling token bucket."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

# Tokens closer than this to a threshold count as reaching it (float rounding, not policy).
_TOLERANCE = 1e-9


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one `take`: whether it may proceed, how long to wait, tokens left."""

    allowed: bool
    retry_after_s: float
    remaining: float


class TokenBucketLimiter:
    """Token buckets keyed by credential: `burst` tokens at most, refilled at `rate_per_s`.

    The state lives in this process only: with several server processes each holds its own
    buckets, so a client spread across N processes may get up to N times the configured rate.
    Meant for single-threaded asyncio use (no awaits inside, so no locks). `rate_per_s <= 0`
    disables limiting. At most `max_keys` buckets are kept: beyond that, buckets that have
    refilled completely are dropped (a full bucket behaves exactly like a new one), then, if
    still too many, the least recently used ones; an evicted key starts again with a full burst.
    """

    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        if math.isnan(rate_per_s) or math.isinf(rate_per_s):
            raise ValueError("rate_per_s must be a finite number")
        self._unlimited = rate_per_s <= 0
        if not self._unlimited and burst < 1:
            raise ValueError("burst must be at least 1 when the rate is limited")
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self._rate = rate_per_s
        self._burst = float(burst)
        self._clock = clock
        self._max_keys = max_keys
        # key -> (tokens, when they were counted), least recently used first. An OrderedDict
        # because a plain dict makes repeated removal from the front quadratic.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        # The sweep for full buckets is linear, so it runs only when it can free something
        # (after a lower bound on when any bucket is full again) and at most once per
        # `_sweep_every` new keys: amortised constant work per key however keys come and go.
        self._next_full_at = math.inf
        self._sweep_every = max(1, max_keys // 16)
        self._new_since_sweep = self._sweep_every

    def __len__(self) -> int:
        """Number of buckets currently held."""
        return len(self._buckets)

    def _refilled(self, bucket: tuple[float, float], now: float) -> float:
        tokens, counted_at = bucket
        return min(self._burst, tokens + max(0.0, now - counted_at) * self._rate)

    def take(self, key: str, cost: float = 1.0) -> Decision:
        """Take `cost` tokens from `key`'s bucket if it has them; otherwise say when it will."""
        if not cost >= 0 or math.isinf(cost):
            raise ValueError("cost must be a finite number >= 0")
        if self._unlimited:
            return Decision(allowed=True, retry_after_s=0.0, remaining=math.inf)
        if cost > self._burst:
            # Such a request could never be allowed; a retry time would be a lie.
            raise ValueError("cost must not exceed the burst size")
        now = self._clock()
        bucket = self._buckets.pop(key, None)
        tokens = self._burst if bucket is None else self._refilled(bucket, now)
        # The tolerance absorbs float rounding in the refill (which grows with the clock's
        # magnitude), so that waiting exactly the advertised retry time is always enough.
        tolerance = _TOLERANCE + 4 * self._rate * math.ulp(now)
        if tokens + tolerance >= cost:
            tokens = max(0.0, tokens - cost)
            decision = Decision(allowed=True, retry_after_s=0.0, remaining=tokens)
        else:
            decision = Decision(
                allowed=False, retry_after_s=(cost - tokens) / self._rate, remaining=tokens
            )
        # Re-inserting moves the key to the most recently used end.
        self._buckets[key] = (tokens, now)
        self._next_full_at = min(self._next_full_at, self._full_at(tokens, now))
        if bucket is None:
            self._new_since_sweep += 1
            if len(self._buckets) > self._max_keys:
                self._shrink(now)
        return decision

    def _full_at(self, tokens: float, counted_at: float) -> float:
        return counted_at + max(0.0, self._burst - _TOLERANCE - tokens) / self._rate

    def _shrink(self, now: float) -> None:
        """Bring the number of buckets back to `max_keys`, dropping full buckets first."""
        if now >= self._next_full_at and self._new_since_sweep >= self._sweep_every:
            self._new_since_sweep = 0
            # A full bucket behaves exactly like a missing one, so dropping it loses nothing.
            self._buckets = OrderedDict(
                (key, bucket)
                for key, bucket in self._buckets.items()
                if self._refilled(bucket, now) + _TOLERANCE < self._burst
            )
            self._next_full_at = min(
                (self._full_at(*bucket) for bucket in self._buckets.values()), default=math.inf
            )
        while len(self._buckets) > self._max_keys:
            # Evicting forgets a debt: that key starts again with a full burst. Least recently
            # used keys go first since they are the likeliest never to return.
            self._buckets.popitem(last=False)


def retry_after_header(seconds: float) -> str:
    """A Retry-After header value: `seconds` rounded up to a whole number, at least 1."""
    if math.isnan(seconds) or math.isinf(seconds):
        raise ValueError("retry time must be a finite number")
    return str(max(1, math.ceil(seconds)))
