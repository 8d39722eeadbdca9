"""CUDA-graph replay of a model's forward pass for one input shape (latency-critical serving).

    runner = fastradio.CudaGraphRunner(model, example)   # example: (B, 3, H, W) on the model's GPU
    summary, features = runner(pixel_values)              # same shape, dtype and device as example

At batch 1 a ViT forward is a few hundred small kernel launches; replaying them as one graph
removes the CPU launch cost (DESIGN.md §9: the batch-1 latency goal assumes graphs). Every op of
every backend is graph-safe: no host syncs inside the forward (the input range check and the
``cu_seqlens`` value check run outside capture), no allocation that depends on values.

What the runner does: warm-up calls on a side stream (fills the model's position-table and
folded-weight caches and lets Triton/cuBLAS pick their kernels), one capture into a private
memory pool, then per call: check the input (shape, dtype, device, and the [0, 1] range check
when ``model.check_input_range`` is on: one device sync), copy it into the static input, replay,
and return the outputs (copies by default; ``copy_outputs=False`` returns the static tensors,
which the next call overwrites).
"""

from __future__ import annotations

import torch

from .model import RadioModel, RadioOutput
from .validation import check_value_range

__all__ = ["CudaGraphRunner"]


class CudaGraphRunner:
    """One captured forward of ``model`` for inputs shaped like ``example`` (see module doc)."""

    def __init__(self, model: RadioModel, example: torch.Tensor, *, feature_fmt: str = "NLC",
                 warmup: int = 2, copy_outputs: bool = True):
        if not isinstance(example, torch.Tensor) or example.dim() != 4:
            got = tuple(example.shape) if isinstance(example, torch.Tensor) else type(example).__name__
            raise ValueError(f"CudaGraphRunner: example must be a (B, 3, H, W) tensor, got {got}")
        if example.device.type != "cuda" or model.device.type != "cuda":
            raise ValueError(f"CudaGraphRunner: CUDA graphs need the model and the example on a CUDA device, "
                             f"got model on {model.device} and example on {example.device}")
        if example.device != model.device:
            raise ValueError(f"CudaGraphRunner: example is on {example.device} but the model is on {model.device}")
        if warmup < 1:
            raise ValueError(f"CudaGraphRunner: warmup must be >= 1 (caches fill before capture), got {warmup}")
        self.model = model
        self.feature_fmt = feature_fmt
        self.copy_outputs = copy_outputs
        self._static_in = example.detach().clone()
        # Warm-up on a side stream (what torch.cuda.graph expects): first calls allocate caches,
        # compile Triton kernels and run the eager checks; none of that may happen in capture.
        side = torch.cuda.Stream(device=model.device)
        side.wait_stream(torch.cuda.current_stream(model.device))
        with torch.cuda.stream(side), torch.inference_mode():
            for _ in range(warmup):
                model(self._static_in, feature_fmt)
        torch.cuda.current_stream(model.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(self.graph):
            self._static_out: RadioOutput = model(self._static_in, feature_fmt)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._static_in.shape)

    def __call__(self, x: torch.Tensor) -> RadioOutput:
        s = self._static_in
        if not isinstance(x, torch.Tensor) or tuple(x.shape) != tuple(s.shape):
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"CudaGraphRunner: the graph was captured for input shape {tuple(s.shape)}, got {got}; "
                             f"capture another runner for that shape")
        if x.device != s.device:
            raise ValueError(f"CudaGraphRunner: expected input on {s.device}, got {x.device}")
        if not (x.is_floating_point() and x.dtype == s.dtype):
            raise TypeError(f"CudaGraphRunner: expected {s.dtype} input (as captured), got {x.dtype}")
        if self.model.check_input_range and not self.model._external_preprocessor:
            check_value_range(x, "input")
        s.copy_(x)
        self.graph.replay()
        out = self._static_out
        return RadioOutput(out.summary.clone(), out.features.clone()) if self.copy_outputs else out
