"""Stamp matching of several message streams (image, depth, instance mask) and a newest-wins hand-off slot.

``make_matcher`` returns message_filters' synchronizer when that package is importable, else
``StampMatcher`` (same behaviour: exact or approximate-with-slop matching, unmatched messages dropped).
Neither needs a running node: messages are fed with ``add(name, msg)``, which returns the matched tuple
(ordered like ``names``) or None.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Sequence

__all__ = ["LatestSlot", "StampMatcher", "make_matcher", "stamp_ns"]


def stamp_ns(msg) -> int:
    """header.stamp as integer nanoseconds."""
    s = msg.header.stamp
    return int(s.sec) * 1_000_000_000 + int(s.nanosec)


class StampMatcher:
    """Newest-first stamp matcher.

    On every ``add`` it looks, from the newest ``names[0]`` message (the pivot, e.g. the image) backwards,
    for a set with one message per stream whose stamps are within ``slop`` seconds of the pivot's (equal
    when ``slop == 0``), each the closest of its stream; it returns the newest such set and discards it
    together with everything older. A set is only final when, for every stream, the chosen stamp equals the
    pivot's or the stream already holds a message newer than the pivot (so no closer one can still come):
    at 30 Hz an image is not paired with the previous depth frame just because its own depth is late.
    Each stream keeps at most ``queue_size`` messages. ``dropped`` counts the messages discarded unmatched.
    """

    def __init__(self, names: Sequence[str], slop: float = 0.0, queue_size: int = 5):
        if not names:
            raise ValueError("StampMatcher needs at least one stream name")
        if slop < 0 or queue_size < 1:
            raise ValueError(f"need slop >= 0 and queue_size >= 1, got {slop}, {queue_size}")
        self.names = tuple(names)
        self.slop_ns = int(round(slop * 1e9))
        self.queue_size = int(queue_size)
        self.dropped = 0
        self._queues: dict[str, list[tuple[int, int, object]]] = {n: [] for n in self.names}
        self._seq = 0  # tie-breaker so equal stamps never compare messages
        self._lock = threading.Lock()

    def add(self, name: str, msg) -> tuple | None:
        """Insert ``msg`` of stream ``name``; return the newest complete set (ordered like ``names``) or None."""
        if name not in self._queues:
            raise ValueError(f"unknown stream {name!r} (streams: {self.names})")
        with self._lock:
            q = self._queues[name]
            self._seq += 1
            bisect.insort(q, (stamp_ns(msg), self._seq, msg))
            if len(q) > self.queue_size:
                del q[0]
                self.dropped += 1
            return self._match()

    def _match(self) -> tuple | None:
        pivots = self._queues[self.names[0]]
        for p in range(len(pivots) - 1, -1, -1):
            t = pivots[p][0]
            picked = [p]
            for other in self.names[1:]:
                q = self._queues[other]
                best = min(range(len(q)), key=lambda i: abs(q[i][0] - t), default=None)
                if best is None or abs(q[best][0] - t) > self.slop_ns:
                    break
                if q[best][0] != t and q[-1][0] <= t:
                    break  # a closer partner may still arrive: wait (an older pivot may be final)
                picked.append(best)
            else:
                out = []
                for stream, i in zip(self.names, picked):
                    q = self._queues[stream]
                    out.append(q[i][2])
                    self.dropped += i  # older, never matched
                    del q[: i + 1]
                return tuple(out)
        return None


class _MessageFiltersMatcher:
    """message_filters (Time|ApproximateTime)Synchronizer behind the ``StampMatcher.add`` interface."""

    def __init__(self, names: Sequence[str], slop: float, queue_size: int, message_filters):
        self.names = tuple(names)
        self.dropped = 0  # message_filters does not report its discards
        self._inputs = {n: message_filters.SimpleFilter() for n in self.names}
        fs = [self._inputs[n] for n in self.names]
        if slop > 0:
            self._sync = message_filters.ApproximateTimeSynchronizer(fs, queue_size, slop)
        else:
            self._sync = message_filters.TimeSynchronizer(fs, queue_size)
        self._sync.registerCallback(self._on_set)
        self._out: tuple | None = None
        self._lock = threading.Lock()

    def _on_set(self, *msgs) -> None:
        self._out = tuple(msgs)

    def add(self, name: str, msg) -> tuple | None:
        if name not in self._inputs:
            raise ValueError(f"unknown stream {name!r} (streams: {self.names})")
        with self._lock:
            self._out = None
            self._inputs[name].signalMessage(msg)  # synchronizers call back synchronously
            out, self._out = self._out, None
            return out


def make_matcher(names: Sequence[str], slop: float, exact: bool, queue_size: int,
                 use_message_filters: bool = True):
    """A matcher for ``names`` (exact stamps if ``exact`` else within ``slop`` s); message_filters if present.

    A single stream needs no matching: the returned matcher passes every message through.
    """
    slop = 0.0 if exact else float(slop)
    if len(names) > 1 and use_message_filters:
        try:
            import message_filters

            return _MessageFiltersMatcher(names, slop, queue_size, message_filters)
        except ImportError:
            pass
    return StampMatcher(names, slop=slop, queue_size=queue_size)


class LatestSlot:
    """One-item hand-off between the executor thread and the inference worker: a new item replaces an
    unconsumed one (which counts as a drop), so the worker always gets the newest frame, never a backlog."""

    def __init__(self):
        self._item = None
        self._cond = threading.Condition()
        self.dropped = 0

    def put(self, item) -> bool:
        """Store ``item``; True when it replaced an item the worker had not taken yet."""
        with self._cond:
            replaced = self._item is not None
            if replaced:
                self.dropped += 1
            self._item = item
            self._cond.notify()
            return replaced

    def take(self, timeout: float | None = None):
        """The newest item (and empty the slot), or None after ``timeout`` seconds."""
        with self._cond:
            if self._item is None:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return item

    def wake(self) -> None:
        """Wake a waiting ``take`` (used at shutdown)."""
        with self._cond:
            self._cond.notify_all()
