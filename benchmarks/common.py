"""Timing helpers shared by the op and model benchmarks (DESIGN.md §9, benchmarks/README.md).

GPU times are CUDA-event times of single calls, after warm-up, with L2 flushed before every
call (a write over a buffer twice the L2 size, outside the timed window; a short spin kernel
first lets the host run ahead so launch latency is not timed), reported as the median
and the 10th/90th percentiles of many runs. ``time_graph`` replays a CUDA graph of many calls to
give the launch-overhead-free time (warm L2) that small shapes are dominated by. On CPU (dry
runs) the same functions fall back to wall-clock timing, marked as such.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable, NamedTuple, Sequence

import torch

__all__ = ["Timing", "L2Flusher", "time_fn", "time_graph", "copy_bandwidth"]


class Timing(NamedTuple):
    """One measurement: milliseconds per call."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    reps: int
    method: str  # "cuda-events cold-L2" | "cuda-events warm" | "cuda-graph warm" | "cpu-wall"


def _summary(samples_ms: Sequence[float], method: str) -> Timing:
    s = sorted(samples_ms)
    q = lambda p: s[min(len(s) - 1, max(0, round(p * (len(s) - 1))))]  # noqa: E731
    return Timing(statistics.median(s), q(0.1), q(0.9), len(s), method)


class L2Flusher:
    """Evicts L2 by writing a buffer twice its size (at least 64 MiB) before each timed call."""

    def __init__(self, device: torch.device):
        l2 = getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 0) or 50 * 2**20
        self.nbytes = max(2 * l2, 64 * 2**20)
        self._buf = torch.empty(self.nbytes // 4, dtype=torch.int32, device=device)

    def __call__(self) -> None:
        self._buf.zero_()


def time_fn(fn: Callable[..., object], args_list: Sequence[tuple] = ((),), *, warmup: int = 10,
            reps: int = 100, flush_l2: bool = True, device: torch.device | str | None = None) -> Timing:
    """Median time of ``fn(*args)`` per call, cycling through ``args_list`` (rotating inputs).

    CUDA: one pair of events around each call; with ``flush_l2`` the L2 is flushed before each
    call, outside the events. CPU: wall clock around each call.
    """
    device = torch.device(device) if device is not None else _device_of(args_list)
    if device.type != "cuda":
        for i in range(min(warmup, 3)):
            fn(*args_list[i % len(args_list)])
        samples = []
        for i in range(reps):
            t0 = time.perf_counter()
            fn(*args_list[i % len(args_list)])
            samples.append((time.perf_counter() - t0) * 1e3)
        return _summary(samples, "cpu-wall")
    flush = L2Flusher(device) if flush_l2 else None
    for i in range(warmup):
        fn(*args_list[i % len(args_list)])
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    torch.cuda.synchronize(device)
    for i in range(reps):
        _get_ahead()
        if flush is not None:
            flush()
        starts[i].record()
        fn(*args_list[i % len(args_list)])
        ends[i].record()
    torch.cuda.synchronize(device)
    samples = [s.elapsed_time(e) for s, e in zip(starts, ends)]
    return _summary(samples, "cuda-events cold-L2" if flush_l2 else "cuda-events warm")


def time_graph(fn: Callable[..., object], args_list: Sequence[tuple] = ((),), *, calls: int = 20,
               replays: int = 20, device: torch.device | str | None = None) -> Timing | None:
    """Per-call time of a CUDA graph holding ``calls`` calls of ``fn`` (warm L2, no launch
    overhead). None on CPU or if ``fn`` cannot be captured (e.g. it synchronises)."""
    device = torch.device(device) if device is not None else _device_of(args_list)
    if device.type != "cuda":
        return None
    try:
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for i in range(3):
                fn(*args_list[i % len(args_list)])
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for i in range(calls):
                fn(*args_list[i % len(args_list)])
    except Exception:  # noqa: BLE001 - "not capturable" is a result, not an error
        torch.cuda.synchronize(device)
        return None
    graph.replay()
    torch.cuda.synchronize(device)
    samples = []
    for _ in range(replays):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        graph.replay()
        e.record()
        e.synchronize()
        samples.append(s.elapsed_time(e) / calls)
    del graph
    return _summary(samples, "cuda-graph warm")


def copy_bandwidth(device: torch.device | str, nbytes: int = 1 << 30) -> dict:
    """Device-to-device copy bandwidth, GB/s counting bytes read + written (the roofline that
    memory-bound kernels are compared with)."""
    device = torch.device(device)
    if device.type != "cuda":
        nbytes = min(nbytes, 64 << 20)
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).fill_(1.0)
    dst = torch.empty_like(src)
    t = time_fn(lambda: dst.copy_(src), warmup=5, reps=30, flush_l2=False, device=device)
    gbps = 2 * nbytes / (t.median_ms * 1e-3) / 1e9
    return {"bytes": nbytes, "median_ms": t.median_ms, "GBps": gbps, "method": t.method}


def _get_ahead(cycles: int = 200_000) -> None:
    # A ~0.1 ms spin kernel keeps the GPU busy while the host enqueues the next call, so the
    # events time the kernel and not the host's launch latency (Python launchers take ~20 us).
    sleep = getattr(torch.cuda, "_sleep", None)
    if sleep is not None:
        sleep(cycles)


def _device_of(args_list: Sequence[tuple]) -> torch.device:
    for args in args_list:
        for a in args:
            if isinstance(a, torch.Tensor):
                return a.device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
