"""Detect camera frames lost in transport: a dropped DDS sample never reaches a callback.

What does arrive is the small ``camera_info`` published with every frame (same stamp as the image). A
camera_info stamp that no image matched within ``window_s`` means the image of that frame was lost (or
never sent); the frame size it announces (width x height x bytes per pixel) says why it was likely lost.
Measured with ``bench/large_frames_bench.py``: Fast DDS best-effort readers lose a growing fraction of
samples above ~16 MiB (a 4000x3000 rgb8 image is 34 MiB), most of them when the publisher is RELIABLE,
whatever the shared-memory segment size; reliable readers get them all.

No ROS imports: the node feeds stamps in and logs / counts what ``check`` returns.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

__all__ = ["FrameLossMonitor", "LARGE_FRAME_BYTES"]

# Above this size best-effort delivery was measured to lose frames (bench/large_frames_bench.py).
LARGE_FRAME_BYTES = 16 * 2**20


class FrameLossMonitor:
    """Counts camera_info stamps never matched by an image within ``window_s`` seconds.

    Only while the camera's images carry their camera_info's stamp (seen at least once) or no image has
    arrived at all: a driver that stamps them differently is never reported."""

    def __init__(self, window_s: float = 2.0, keep: int = 256):
        self.window_s = float(window_s)
        self.keep = int(keep)
        self.lost = 0
        self.last_lost_bytes = 0
        self._pending: OrderedDict[int, tuple[float, int, int]] = OrderedDict()  # stamp -> (t, w, h)
        self._images: OrderedDict[int, None] = OrderedDict()  # image stamps seen (images may come first)
        self._bpp = 3  # bytes per pixel of the colour image, from the last image that arrived
        self._any_image = False
        self._ever_matched = False  # camera_info and image stamps are equal for this camera
        self._lock = threading.Lock()

    def info(self, stamp_ns: int, width: int, height: int, now: float) -> None:
        """A camera_info arrived (``now`` = monotonic time)."""
        with self._lock:
            if stamp_ns in self._images or stamp_ns in self._pending:
                return
            self._pending[stamp_ns] = (now, int(width), int(height))
            while len(self._pending) > self.keep:
                self._pending.popitem(last=False)
                self.lost += 1

    def image(self, stamp_ns: int, bytes_per_pixel: int | None = None) -> None:
        """An image arrived (any state of validity: it was delivered)."""
        with self._lock:
            self._any_image = True
            if bytes_per_pixel:
                self._bpp = int(bytes_per_pixel)
            if self._pending.pop(stamp_ns, None) is not None:
                self._ever_matched = True
            else:
                self._images[stamp_ns] = None
                while len(self._images) > self.keep:
                    self._images.popitem(last=False)

    def check(self, now: float) -> tuple[int, str | None]:
        """(frames newly found lost, a one-line explanation or None)."""
        with self._lock:
            new, w, h = 0, 0, 0
            while self._pending:
                stamp, (t, w0, h0) = next(iter(self._pending.items()))
                if now - t < self.window_s:
                    break
                self._pending.popitem(last=False)
                new, w, h = new + 1, w0, h0
            if not new or (self._any_image and not self._ever_matched):
                return 0, None  # images arrive but never with their camera_info's stamp: cannot tell
            self.lost += new
            size = w * h * self._bpp
            self.last_lost_bytes = size
        mib = size / 2**20
        text = (f"{new} frame(s) announced by camera_info ({w}x{h}, {mib:.1f} MiB per image) never arrived "
                f"as images within {self.window_s:.0f} s")
        if size > LARGE_FRAME_BYTES:
            text += (f": frames above {LARGE_FRAME_BYTES // 2**20} MiB are lost by best-effort DDS delivery; "
                     "publish the camera reliably with input_reliability: auto (the default) or reliable, "
                     "or publish smaller frames")
        else:
            text += ": check the image topic, its publisher and QoS (input_reliability)"
        return new, text
