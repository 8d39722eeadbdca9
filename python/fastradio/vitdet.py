"""ViTDet windowed attention as packed segments (spec/c-radiov2.md §7; DESIGN.md decision 26).

The mode's facts: with G global blocks (``ArchConfig.vitdet_global_blocks``: 8 for giant, 4
otherwise, or the caller's count) the period is per = max(depth // G, 1); block i < depth - 1 is
windowed iff i mod per != per - 1; the last block is global. A windowed block runs on the patch
tokens only (the prefix tokens are set aside for the whole block) and attends inside each ws x ws
window; a global block runs over every token of its image.

Our attention is variable-length over packed segments, so a window is just another segment. The
model keeps its packed rows in one *layout* for the whole forward:

    rows [0, M):      every image's patch tokens, image after image, each window-major (windows
                      row-major over the window grid, tokens row-major inside a window)
    rows [M, M + BP): every image's P prefix tokens, image after image

so a windowed block is ``step`` on the contiguous view ``x[:M]`` with one ws² segment per window
(every window is full: sides are multiples of ws), and a global block is ``step`` on all rows,
whose attention needs each image's rows together: its qkv rows are gathered into
[patches_i, prefix_i] per image (attention is permutation-equivariant over a segment) and its
output scattered back; with one image the layout already is that (no gather). The layout is
entered with one index_select after the patch embedding and left with one per returned output.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch

__all__ = ["check_options", "num_global_default", "schedule", "Layout", "layout"]


def num_global_default(cfg) -> int:
    """The spec's G: 8 for the giant architecture, 4 otherwise (an architecture fact)."""
    return cfg.arch.vitdet_global_blocks


def check_options(window_size, num_global, depth: int) -> None:
    """Validate ``vitdet_window_size`` / ``vitdet_num_global`` (None = off / the spec's default)."""
    if window_size is not None and (isinstance(window_size, bool) or not isinstance(window_size, int)
                                    or window_size < 1):
        raise ValueError(f"vitdet_window_size: expected a positive integer (window side in patches) or None, "
                         f"got {window_size!r}")
    if num_global is None:
        return
    if window_size is None:
        raise ValueError(f"vitdet_num_global={num_global!r} needs vitdet_window_size (windowed attention is off)")
    if isinstance(num_global, bool) or not isinstance(num_global, int) or not 1 <= num_global <= depth:
        raise ValueError(f"vitdet_num_global: expected an integer in 1..{depth} (the model's depth) or None, "
                         f"got {num_global!r}")


def schedule(depth: int, num_global: int) -> tuple[bool, ...]:
    """Per block: True when windowed (spec §7). The last block is always global."""
    per = max(depth // num_global, 1)
    return tuple(i < depth - 1 and i % per != per - 1 for i in range(depth))


def _window_major(h: int, w: int, ws: int) -> torch.Tensor:
    """(h*w,) row-major patch index of each window-major position."""
    r = torch.arange(h).view(h // ws, 1, ws, 1).expand(h // ws, w // ws, ws, ws)
    c = torch.arange(w).view(1, w // ws, 1, ws).expand(h // ws, w // ws, ws, ws)
    return (r * w + c).reshape(-1)


class Layout(NamedTuple):
    """The packed rows of one forward in the windowed layout (module doc)."""

    #: (N,) int64: layout row k holds row perm[k] of the packed embedding (enter: index_select)
    perm: torch.Tensor
    #: (N,) int64: packed row j is layout row inv[j] (leave: index_select)
    inv: torch.Tensor
    #: patch rows M (rows [0, M) of the layout)
    patches: int
    #: windows: cu_seqlens (int32) of the ws² segments over rows [0, M), and ws²
    win_cu: torch.Tensor
    win_len: int
    #: global attention: rows of the layout in attention order ([patches_i, prefix_i] per image;
    #: None when that is the layout itself, i.e. one image), the images' cu_seqlens and longest
    glob_order: torch.Tensor | None
    glob_cu: torch.Tensor
    glob_len: int


def layout(grids: Sequence[tuple[int, int]], prefix: int, ws: int, device: torch.device) -> Layout:
    """The layout of images with patch grids ``grids`` [(h_i, w_i)], packed as [prefix_i, patches_i]
    one after another (the model's packed embedding), for window side ``ws``."""
    perm_p, perm_q, order = [], [], []
    m = sum(h * w for h, w in grids)
    start = patch_row = 0
    for i, (h, w) in enumerate(grids):
        n = h * w
        perm_p.append(start + prefix + _window_major(h, w, ws))
        perm_q.append(torch.arange(start, start + prefix))
        order.append(torch.arange(patch_row, patch_row + n))
        order.append(torch.arange(m + i * prefix, m + (i + 1) * prefix))
        start += prefix + n
        patch_row += n
    perm = torch.cat(perm_p + perm_q)
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel())
    lens = [prefix + h * w for h, w in grids]
    glob_cu = torch.tensor([0, *lens]).cumsum(0).to(torch.int32)
    win_cu = torch.arange(0, m + 1, ws * ws, dtype=torch.int32)
    glob_order = torch.cat(order) if len(grids) > 1 else None
    return Layout(perm.to(device), inv.to(device), m, win_cu.to(device), ws * ws,
                  None if glob_order is None else glob_order.to(device), glob_cu.to(device), max(lens))
