"""Per-source budgets of what callers nobody has authenticated may ask of the node (issue 15 §2).

A source (the caller's network address; an IPv6 address counts by its /64, the block one
subscriber holds) spends one unit of its budget for each request to a route that needs no
credentials, and one for each refusal of a caller nobody authenticated (a bad token, an envelope
that does not open, a malformed request). Once the budget of a window is spent, its requests
there are answered 429 with ``Retry-After`` until a unit of it is free again. The budget holds
over a sliding window (the ``limits`` library's sliding window counter: what the previous window
spent weighs on the current one by the share of it the last window's length still covers), so a
source cannot spend it twice across a window's edge as a fixed window would let it. The counters
are the store's (:class:`gsomia.store.RateCounters`), so every process of the node spends from
the same budget; a process also remembers, until a unit could be free, a source it has seen
spent, and refuses it without asking the store again (before then the weighted count only
decreases by what was spent before, never below the budget, so the memory is never wrong, only
late).

Sources in the configured exempt networks (partners behind a fixed address, a monitoring host)
spend nothing; by default there are none, loopback included.
"""

from __future__ import annotations

import ipaddress
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence

from limits import RateLimitItem, parse_many
from limits.strategies import SlidingWindowCounterRateLimiter

from gsomia.store import RateCounters

__all__ = ["Admission", "parse_networks", "parse_rates"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_rates(text: str) -> list[RateLimitItem]:
    """``limits``' notation, e.g. ``600/minute`` or ``20/second; 600/minute``; ``ValueError`` if not."""
    rates = parse_many(text)
    if not rates:
        raise ValueError(f"{text!r} names no rate")
    return rates


def parse_networks(texts: Sequence[str]) -> tuple[Network, ...]:
    """Networks in CIDR notation (an address alone is its own network); ``ValueError`` if not."""
    return tuple(ipaddress.ip_network(text, strict=False) for text in texts)


class Admission:
    """Whether a source may still be served without credentials, and what it has spent."""

    MEMORY = 4096
    """Spent sources a process remembers at most (the oldest forgotten first; the store still knows)."""

    def __init__(
        self,
        counters: RateCounters,
        rates: Sequence[RateLimitItem],
        exempt: Sequence[Network] = (),
        *,
        now_us: Callable[[], int],
    ) -> None:
        self.counters = counters
        self.rates = tuple(rates)
        self.exempt = tuple(exempt)
        self.now_us = now_us
        self._limiter = SlidingWindowCounterRateLimiter(counters)
        self._spent: OrderedDict[str, int] = OrderedDict()  # source -> when its window ends (us)
        self._lock = threading.Lock()

    def source_key(self, source: str | None) -> str | None:
        """What a source is counted as: ``None`` for no network source or an exempt one; an IPv6
        address as its /64; anything else (a test client's name) as given, at most 64 characters."""
        if source is None:
            return None
        try:
            address = ipaddress.ip_address(source)
        except ValueError:
            return source[:64]
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in network for network in self.exempt):
            return None
        if isinstance(address, ipaddress.IPv6Address):
            return str(ipaddress.IPv6Network((address, 64), strict=False))
        return str(address)

    def spend(self, source: str | None, cost: int = 1) -> int | None:
        """Spend ``cost`` of ``source``'s budget: ``None`` while it lasts, else the seconds until
        the window that ran out ends (the ``Retry-After``)."""
        if cost <= 0:
            return None
        return self._ask(source, lambda rate, key: self._hit(rate, key, cost))

    def _hit(self, rate: RateLimitItem, key: str, cost: int) -> bool:
        """Spend ``cost`` of ``rate`` if it is left. If not, what is left is spent all the same: a
        refusal's cost is work already done (25 envelopes that did not open), and the library's
        strategy spends nothing on a hit it refuses, so a cost over the budget would otherwise
        leave the source unspent in the store, for every process."""
        if self._limiter.hit(rate, key, cost=cost):
            return True
        left = self._limiter.get_window_stats(rate, key).remaining
        if 0 < left < cost:
            self._limiter.hit(rate, key, cost=left)
        return False

    def check(self, source: str | None) -> int | None:
        """As :meth:`spend`, spending nothing (a route whose caller proves itself by what it sends
        is refused only once its source's refusals have spent the budget)."""
        return self._ask(source, self._limiter.test)

    def _ask(self, source: str | None, within: Callable[[RateLimitItem, str], bool]) -> int | None:
        """``None`` if ``within(rate, key)`` holds for every rate, else the seconds to wait."""
        key = self.source_key(source)
        if key is None:
            return None
        waiting = self._remembered(key)
        if waiting is not None:
            return waiting
        waits = [self._free_in(rate, key) for rate in self.rates if not within(rate, key)]
        return self._remember(key, max(waits)) if waits else None

    def _free_in(self, rate: RateLimitItem, key: str) -> float:
        """Seconds until a unit of ``rate`` may be free for ``key``: ``limits``' own reckoning
        (``SlidingWindowCounterRateLimiter.get_window_stats``), on the node's clock rather than
        the wall clock that method reads."""
        expiry = rate.get_expiry()
        before, weighs, count, current = self.counters.get_sliding_window(rate.key_for(key), expiry)
        waits = []
        if before:
            waits.append(weighs % (expiry / before))
        if count:
            waits.append(current % expiry)
        return min(waits, default=0.0)  # nothing counted: a cost over the whole budget; no wait frees it

    def prune(self) -> int:
        """Forget the counters of windows that have ended (every process's; the node's loop)."""
        return self.counters.prune()

    def _remembered(self, key: str) -> int | None:
        now = self.now_us()
        with self._lock:
            ends = self._spent.get(key)
            if ends is None:
                return None
            if ends <= now:
                del self._spent[key]
                return None
        return math.ceil((ends - now) / 1_000_000)

    def _remember(self, key: str, wait_s: float) -> int:
        ends = self.now_us() + math.ceil(wait_s * 1_000_000)
        with self._lock:
            self._spent[key] = ends
            self._spent.move_to_end(key)
            while len(self._spent) > self.MEMORY:
                self._spent.popitem(last=False)
        return max(1, math.ceil((ends - self.now_us()) / 1_000_000))
