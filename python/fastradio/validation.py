"""Input checks at the model boundary (spec §9, DESIGN.md §10).

Every error names what was expected and what came. Checks that need the tensor's values (the
[0, 1] range) cost a device sync, so they are skipped under torch.compile / CUDA-graph capture and
can be switched off with ``model.check_input_range = False``.
"""

from __future__ import annotations

import torch

__all__ = ["nearest_supported", "check_image_batch", "check_image", "check_value_range", "RANGE_SLACK"]

#: Inputs must lie in [0, 1]; resampling (bicubic overshoot) may step outside a little, so only
#: values beyond [-RANGE_SLACK, 1 + RANGE_SLACK] are refused. 0-255 data is far outside.
RANGE_SLACK = 0.5

_FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def nearest_supported(h: int, w: int, step: int) -> tuple[int, int]:
    """Per side ``round(side / step) * step`` (Python's banker's rounding), at least one step."""
    return tuple(max(round(side / step), 1) * step for side in (h, w))  # type: ignore[return-value]


def _check_dtype(x: torch.Tensor, what: str) -> None:
    if x.dtype in _FLOAT_DTYPES:
        return
    hint = ""
    if x.dtype == torch.uint8:
        hint = " (8-bit image data: convert with x.float() / 255)"
    elif not x.dtype.is_floating_point:
        hint = " (convert to float and scale to [0, 1])"
    raise TypeError(f"{what}: expected a floating-point tensor (float32, float16, bfloat16 or float64) "
                    f"holding RGB values in [0, 1], got dtype {x.dtype}{hint}")


def _check_channels(c: int, what: str) -> None:
    if c == 3:
        return
    hint = {1: " (grayscale: repeat it to RGB, e.g. x.expand(-1, 3, -1, -1))",
            4: " (RGBA: drop or composite the alpha channel first)"}.get(c, "")
    raise ValueError(f"{what}: expected 3 (RGB) channels, got {c}{hint}")


def _check_size(h: int, w: int, step: int, what: str) -> None:
    if h >= step and w >= step and h % step == 0 and w % step == 0:
        return
    nh, nw = nearest_supported(h, w, step)
    raise ValueError(f"{what}: height and width must be positive multiples of {step}, got {h}x{w}; "
                     f"the nearest supported resolution is {nh}x{nw} "
                     f"(model.get_nearest_supported_resolution(h, w) computes it)")


def _check_device(x: torch.Tensor, device: torch.device, what: str) -> None:
    if x.device.type != device.type or (device.index is not None and x.device.index not in (None, device.index)):
        raise ValueError(f"{what}: expected a tensor on {device} (the model's device), got one on {x.device}; "
                         f"move it with x.to({str(device)!r})")


def check_image_batch(x, step: int, device: torch.device) -> None:
    """Check a (B, 3, H, W) batch; raises TypeError/ValueError naming expected vs received."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor of shape (B, 3, H, W) or a list of (3, H, W) tensors, "
                        f"got {type(x).__name__}")
    _check_dtype(x, "input")
    if x.dim() != 4:
        hint = ""
        if x.dim() == 3:
            hint = "; a single image needs a batch dimension (x[None]), or pass a list of (3, H, W) images"
        raise ValueError(f"input: expected a 4-D tensor (B, 3, H, W), got shape {tuple(x.shape)}{hint}")
    _check_channels(x.shape[1], "input")
    _check_size(x.shape[2], x.shape[3], step, "input")
    _check_device(x, device, "input")


def check_image(x, index: int, step: int, device: torch.device) -> None:
    """Check one list element: a (3, H, W) tensor."""
    what = f"image {index} of the list"
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what}: expected a torch.Tensor (3, H, W), got {type(x).__name__}")
    _check_dtype(x, what)
    if x.dim() != 3:
        raise ValueError(f"{what}: expected a 3-D tensor (3, H, W), got shape {tuple(x.shape)}")
    _check_channels(x.shape[0], what)
    _check_size(x.shape[1], x.shape[2], step, what)
    _check_device(x, device, what)


def check_value_range(x: torch.Tensor, what: str = "input") -> None:
    """Refuse values far outside [0, 1] (typically 0-255 data). NaN/inf are let through on
    purpose: they stay inside their own image (spec §9), and a finite-range check must not be
    fooled by them."""
    if x.numel() == 0:
        return
    finite = torch.where(torch.isfinite(x), x, torch.zeros((), dtype=x.dtype, device=x.device))
    lo, hi = (float(v) for v in torch.aminmax(finite))
    if lo < -RANGE_SLACK or hi > 1.0 + RANGE_SLACK:
        hint = " (this looks like 0-255 data: divide by 255)" if hi > 2.0 and lo >= -RANGE_SLACK else ""
        raise ValueError(f"{what}: expected RGB values in [0, 1], got values in [{lo:.4g}, {hi:.4g}]{hint}. "
                         f"If the input is already normalised, call model.make_preprocessor_external(); "
                         f"to skip this check set model.check_input_range = False")
