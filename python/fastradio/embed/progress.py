"""Progress of an ``embed`` run on stderr: a tqdm bar when stderr is a terminal, else log lines
at a steady interval (so a run redirected to a file, a pipe or a job log still shows counts,
images/s and the ETA)::

    2026-11-27 14:03:10 progress: 1200/2000 images (60.0%), 812.4 img/s, elapsed 0:00:01, ETA 0:00:01, 150 shards written, 1 skipped

Counts include images done by earlier runs of a ``--resume``; the rate and the ETA are this
run's (images processed, embedded or skipped, per second since the first image was requested).
"""

from __future__ import annotations

import sys
import time
from typing import Callable, TextIO

__all__ = ["Progress", "fmt_duration"]


def fmt_duration(seconds: float | None) -> str:
    """Seconds → ``H:MM:SS`` (``?`` when unknown)."""
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "?"
    s = int(round(max(seconds, 0.0)))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class Progress:
    """``mode``: ``bar`` (tqdm), ``log`` (lines every ``interval`` seconds; 0 = after every
    update) or ``none``. ``total``: images of the whole job; ``already``: of those, done before
    this run."""

    def __init__(self, *, total: int, already: int = 0, mode: str = "log", interval: float = 10.0,
                 stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, desc: str = "embedding"):
        if mode not in ("bar", "log", "none"):
            raise ValueError(f"mode: expected bar, log or none, got {mode!r}")
        self.total, self.already = int(total), int(already)
        self.mode, self.interval = mode, max(0.0, float(interval))
        self.stream = stream if stream is not None else sys.stderr
        self.clock, self.wall = clock, wall
        self.embedded = self.skipped = self.shards = 0
        self.t0: float | None = None
        self._last = 0.0
        self.bar = None
        self.desc = desc
        self.lines = 0

    # -- life cycle --
    def start(self) -> None:
        self.t0 = self._last = self.clock()
        if self.mode == "bar":
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, initial=self.already, unit="img", file=self.stream,
                            dynamic_ncols=True, desc=self.desc)

    def update(self, embedded: int = 0, skipped: int = 0) -> None:
        if self.t0 is None:
            self.start()
        self.embedded += embedded
        self.skipped += skipped
        if self.bar is not None:
            self.bar.update(embedded + skipped)
            if self.skipped:
                self.bar.set_postfix(skipped=self.skipped, refresh=False)
        elif self.mode == "log":
            now = self.clock()
            if now - self._last >= self.interval:
                self._last = now
                self._emit("progress", now)

    def set_shards(self, n: int) -> None:
        self.shards = int(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    # -- numbers --
    @property
    def processed(self) -> int:
        return self.embedded + self.skipped

    def elapsed(self, now: float | None = None) -> float:
        return 0.0 if self.t0 is None else (self.clock() if now is None else now) - self.t0

    def rate(self, now: float | None = None) -> float | None:
        el = self.elapsed(now)
        return self.processed / el if el > 0 and self.processed else None

    def eta(self, now: float | None = None) -> float | None:
        r = self.rate(now)
        left = self.total - self.already - self.processed
        return 0.0 if left <= 0 else (left / r if r else None)

    def line(self, label: str = "progress", now: float | None = None) -> str:
        now = self.clock() if now is None else now
        done = self.already + self.processed
        pct = 100.0 * done / self.total if self.total else 100.0
        r = self.rate(now)
        parts = [f"{done}/{self.total} images ({pct:.1f}%)", f"{r:.1f} img/s" if r else "? img/s",
                 f"elapsed {fmt_duration(self.elapsed(now))}", f"ETA {fmt_duration(self.eta(now))}"]
        if self.shards:
            parts.append(f"{self.shards} shard{'s' if self.shards != 1 else ''} written")
        if self.skipped:
            parts.append(f"{self.skipped} skipped")
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.wall()))
        return f"{stamp} {label}: " + ", ".join(parts)

    def _emit(self, label: str, now: float | None = None) -> None:
        self.write(self.line(label, now))

    def write(self, text: str) -> None:
        """A line on the stream that does not tear the bar."""
        if self.bar is not None:
            from tqdm import tqdm

            tqdm.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)
        self.lines += 1
