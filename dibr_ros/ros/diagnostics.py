"""Run-time statistics of the perception node and their /diagnostics status.

``NodeStats`` is filled from the executor and the inference worker (thread-safe) and rendered as one
``diagnostic_msgs/DiagnosticStatus`` named ``"<node>: pipeline"``: input rate, frame counters, per-stage
latency p50/p95 (ms), device and the last error.
"""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

__all__ = ["NodeStats"]

# Stage order in the status (pipeline stages first, then the node's own).
_STAGES = ("decode", "segment", "crop", "predict", "place", "complete", "sample", "debug", "total", "publish",
           "node_total", "image_to_points")


class NodeStats:
    """Counters, an input-rate window and per-stage latency windows (last ``window`` frames)."""

    def __init__(self, window: int = 300, stale_after_s: float = 5.0):
        self._lock = threading.Lock()
        self._lat: dict[str, deque] = {}
        self._arrivals: deque = deque(maxlen=200)
        self._window = window
        self.stale_after_s = stale_after_s
        self.counts = {"received": 0, "matched": 0, "processed": 0, "dropped_newer": 0, "dropped_unmatched": 0,
                       "rejected": 0, "failed": 0, "lost_in_transport": 0}
        self.objects_last = 0
        self.sources_last = None  # last frame's cloud: shares measured / support volume / network
        self.last_error = ""
        self._last_error_t = 0.0
        self._last_ok_t = 0.0
        self.device = ""

    def arrival(self) -> float:
        """Record an image arrival; returns its monotonic time."""
        t = time.monotonic()
        with self._lock:
            self._arrivals.append(t)
            self.counts["received"] += 1
        return t

    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counts[key] = self.counts.get(key, 0) + n

    def set_count(self, key: str, n: int) -> None:
        with self._lock:
            self.counts[key] = n

    def latency(self, stage: str, ms: float) -> None:
        with self._lock:
            self._lat.setdefault(stage, deque(maxlen=self._window)).append(float(ms))

    def frame_ok(self, n_objects: int, sources=None) -> None:
        """A processed frame with ``n_objects`` objects; ``sources`` (N,) its cloud points' sources (0
        measured, 1 support volume, 2 network), reported as shares of the last frame's cloud."""
        share = None
        if sources is not None:
            n = np.bincount(np.asarray(sources, np.int64), minlength=3)[:3]
            share = (n / max(1, int(n.sum()))).tolist()
        with self._lock:
            self.counts["processed"] += 1
            self.objects_last = n_objects
            self.sources_last = share
            self._last_ok_t = time.monotonic()

    def error(self, text: str) -> None:
        with self._lock:
            self.last_error = text
            self._last_error_t = time.monotonic()

    def input_rate(self, horizon_s: float = 5.0) -> float:
        """Image arrivals per second over the last ``horizon_s`` seconds (0 with fewer than 2)."""
        now = time.monotonic()
        with self._lock:
            ts = [t for t in self._arrivals if now - t <= horizon_s]
        return (len(ts) - 1) / (ts[-1] - ts[0]) if len(ts) >= 2 and ts[-1] > ts[0] else 0.0

    def percentiles(self) -> dict[str, tuple[float, float, int]]:
        """stage -> (p50 ms, p95 ms, samples)."""
        with self._lock:
            snap = {k: np.asarray(v) for k, v in self._lat.items() if len(v)}
        order = [s for s in _STAGES if s in snap] + sorted(s for s in snap if s not in _STAGES)
        return {s: (float(np.percentile(snap[s], 50)), float(np.percentile(snap[s], 95)), len(snap[s]))
                for s in order}

    def status(self, name: str, hardware_id: str) -> DiagnosticStatus:
        """The DiagnosticStatus: ERROR if the newest attempt failed, WARN if no image for ``stale_after_s``
        or none processed yet, OK otherwise."""
        now = time.monotonic()
        rate = self.input_rate()
        with self._lock:
            counts = dict(self.counts)
            last_arrival = self._arrivals[-1] if self._arrivals else None
            err, err_t, ok_t, n_obj = self.last_error, self._last_error_t, self._last_ok_t, self.objects_last
            share = self.sources_last
        if err and err_t > ok_t:
            level, msg = DiagnosticStatus.ERROR, f"last frame failed: {err}"
        elif last_arrival is None or now - last_arrival > self.stale_after_s:
            level, msg = DiagnosticStatus.WARN, f"no image for {self.stale_after_s:.0f} s"
        elif counts["processed"] == 0:
            level, msg = DiagnosticStatus.WARN, "images arrive but no frame processed yet"
        else:
            level, msg = DiagnosticStatus.OK, f"{rate:.1f} Hz in, {n_obj} objects"
        values = [("device", self.device), ("input_rate_hz", f"{rate:.2f}")]
        values += [(f"frames_{k}", str(v)) for k, v in counts.items()]
        values.append(("objects_last_frame", str(n_obj)))
        if share is not None:  # what the network contributes to the cloud, frame by frame
            for part, x in zip(("measured", "support", "network"), share):
                values.append((f"cloud_{part}_pct_last_frame", f"{100 * x:.1f}"))
        for stage, (p50, p95, _n) in self.percentiles().items():
            values.append((f"latency_{stage}_p50_ms", f"{p50:.1f}"))
            values.append((f"latency_{stage}_p95_ms", f"{p95:.1f}"))
        values.append(("last_error", err))
        values.append(("last_error_age_s", f"{now - err_t:.1f}" if err else ""))
        return DiagnosticStatus(level=level, name=name, message=msg, hardware_id=hardware_id,
                                values=[KeyValue(key=k, value=v) for k, v in values])
