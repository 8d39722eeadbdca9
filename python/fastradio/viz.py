"""Feature pictures: the first three principal components of an image's patch features as RGB,
and a heat map of the per-token feature norms (torch + numpy; Pillow only to write PNG files).

Input convention (one image at a time, the two layouts the model returns, per image):

- ``(h·w, C)`` tokens in row-major patch order, with ``h`` and ``w`` given: ``out.features[i]``
  for the default ``feature_fmt="NLC"``;
- ``(C, h, w)``: ``out.features[i]`` for ``feature_fmt="NCHW"`` (``h``, ``w`` may be omitted; if
  given they must match);
- ``(h, w, C)`` only with ``layout="HWC"`` (a 3-D array is otherwise read as ``(C, h, w)``).

Torch tensors (any float dtype, any device) and numpy arrays are accepted; the arithmetic is done
in float64 on the CPU so that a picture depends only on the values, not on the device or thread
count. Every picture is an ``(h, w, 3)`` ``uint8`` numpy array (one pixel per patch);
:func:`upscale` brings it to the input size.

PCA picture (:func:`pca_rgb`):

1. fit (:func:`fit_pca_basis`, or a given :class:`PCABasis`): mean over tokens, top-3 eigenvectors
   of the token covariance. Tokens whose L2 norm is far above the others (median + ``outlier_mad``
   × the scaled median absolute deviation: the high-norm "register"-like tokens of trained ViTs)
   are left out of the fit, so one such token cannot claim a whole component; they are still
   drawn (clamped).
2. signs: each component is negated if needed so that its largest-magnitude loading is positive
   (the lower index wins a tie). Eigen-solvers return ``v`` or ``-v`` arbitrarily; after this a
   basis and its sign-flipped copy give identical pictures.
3. scaling: per channel, the ``percentiles`` (default 1st and 99th) of the projections map to
   0 and 255, values beyond are clamped, so a few extreme tokens do not wash the picture out.

Joint pictures (:func:`fit_pca_basis` over several images, or :func:`pca_rgb_batch` with
``joint=True``): one mean, one set of components and one per-channel range for all images, so a
colour means the same feature direction in every picture of the set.

Degenerate inputs: components with (numerically) zero variance are not used. With three usable
components the picture is RGB; with two, blue stays at mid-grey (128); with one, the picture is
grey (R = G = B); with none (a single token, or identical tokens) it is uniformly mid-grey. A
non-finite feature (NaN or ±inf) is an error naming how many and where the first one is.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["PCABasis", "tokens", "fit_pca_basis", "pca_rgb", "pca_rgb_batch", "token_norms", "token_norm_map",
           "heat_colors", "upscale", "side_by_side", "to_rgb_uint8", "save_png"]

DEFAULT_PERCENTILES = (1.0, 99.0)
DEFAULT_OUTLIER_MAD = 6.0
_MAD_SCALE = 1.4826   # MAD x this = the standard deviation, for normal data
_LAYOUTS = (None, "NLC", "CHW", "HWC")


@dataclasses.dataclass(frozen=True)
class PCABasis:
    """``mean`` (C,), ``components`` (k, C) orthonormal rows (k ≤ 3, sign-fixed), and per
    component the projection range ``lo``/``hi`` (k,) that maps to 0..255, or None to take the
    range of each picture's own projections. float64 CPU tensors."""

    mean: torch.Tensor
    components: torch.Tensor
    lo: torch.Tensor | None = None
    hi: torch.Tensor | None = None

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])


# -- input checks ------------------------------------------------------------------------------------

def _as_tensor(x, what: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.asarray(x))
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what}: expected a torch.Tensor or numpy array, got {type(x).__name__}")
    if not (x.is_floating_point() or x.dtype in (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)):
        raise TypeError(f"{what}: expected real numbers, got dtype {x.dtype}")
    return x.detach().to("cpu", torch.float64)


def _check_finite(x: torch.Tensor, what: str) -> None:
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        first = tuple(int(i) for i in bad.nonzero()[0])
        raise ValueError(f"{what}: expected finite values, got {int(bad.sum())} NaN/inf of {x.numel()} "
                         f"(first at index {first}: {x[first].item()}); the model output is broken (check the "
                         f"input range and dtype) or the array is not features")


def tokens(features, h: int | None = None, w: int | None = None, *, layout: str | None = None,
           what: str = "features") -> tuple[torch.Tensor, int, int]:
    """One image's features (see the module docstring) → ((h·w, C) float64 CPU, h, w)."""
    if layout not in _LAYOUTS:
        raise ValueError(f"layout: expected one of NLC, CHW, HWC (or None), got {layout!r}")
    x = _as_tensor(features, what)
    shape = tuple(x.shape)
    if x.dim() == 2 and layout in (None, "NLC"):
        if h is None or w is None:
            raise ValueError(f"{what}: (h·w, C) tokens {shape} need the patch grid: pass h and w")
        h, w = int(h), int(w)
        if h < 1 or w < 1 or h * w != shape[0]:
            raise ValueError(f"{what}: expected {h}x{w} = {h * w} tokens (h·w, C), got {shape}")
        t = x
    elif x.dim() == 3 and layout in (None, "CHW", "HWC"):
        gh, gw = shape[1:] if layout != "HWC" else shape[:2]
        if (h is not None and int(h) != gh) or (w is not None and int(w) != gw):
            lay = layout or "CHW"
            hint = " (for (h, w, C) pass layout='HWC')" if not layout else ""
            if shape[0] == 1 and h is not None and w is not None and shape[1] == int(h) * int(w):
                hint = " (a batch of one (1, h·w, C)? pass out.features[0])"
            raise ValueError(f"{what}: a {lay} array of shape {shape} has a {gh}x{gw} grid, but h, w = {h}, {w} "
                             f"were given{hint}")
        h, w = gh, gw
        t = x.permute(1, 2, 0).reshape(h * w, -1) if layout != "HWC" else x.reshape(h * w, -1)
    else:
        want = {None: "(h·w, C) or (C, h, w)", "NLC": "(h·w, C)", "CHW": "(C, h, w)", "HWC": "(h, w, C)"}[layout]
        batched = x.dim() >= (3 if layout == "NLC" else 4)
        hint = " (one image at a time: index the batch, e.g. out.features[i])" if batched else ""
        raise ValueError(f"{what}: expected one image's features {want}, got shape {shape}{hint}")
    if t.shape[0] < 1 or t.shape[1] < 1:
        raise ValueError(f"{what}: expected at least one token and one channel, got shape {shape}")
    _check_finite(t, what)
    return t, h, w


# -- fitting -----------------------------------------------------------------------------------------

def _inliers(t: torch.Tensor, outlier_mad: float | None) -> torch.Tensor:
    """Tokens to fit on: those whose norm is not far above the others' (see the module docstring)."""
    if outlier_mad is None or t.shape[0] < 4:
        return t
    n = t.norm(dim=1)
    med = n.median()
    mad = (n - med).abs().median() * _MAD_SCALE
    keep = n <= med + outlier_mad * mad if mad > 0 else n <= med * (1 + 1e-9) + 1e-300
    return t[keep] if int(keep.sum()) >= 3 else t


def _fix_signs(comps: torch.Tensor) -> torch.Tensor:
    """Negate each row whose largest-|loading| entry is negative (lowest index wins a tie)."""
    if comps.shape[0] == 0:
        return comps
    idx = comps.abs().argmax(dim=1)   # argmax returns the first maximal index
    sign = torch.sign(comps.gather(1, idx[:, None])[:, 0])
    sign[sign == 0] = 1
    return comps * sign[:, None]


_FULL_EIGH_MAX = 64       # up to this size a full eigh is cheap; above, subspace iteration
_SUBSPACE_EXTRA = 13      # extra vectors carried along: convergence goes as (λ_{k+extra+1} / λ_k)^iterations
_SUBSPACE_ITERS = 40
_SUBSPACE_TOL = 1e-6      # Ritz residual ‖A v − λ v‖ relative to λ_1


def _top_eigh(a: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` largest eigenpairs of a symmetric PSD float64 matrix: (values descending (k,),
    vectors as columns (m, k)). A full eigh of a 1280 x 1280 matrix takes seconds on a CPU core and
    we need three vectors, so larger matrices use subspace iteration with Rayleigh-Ritz from a
    fixed-seed start (deterministic; stops when the top-k residuals are below the tolerance or
    after a fixed number of steps: where eigenvalues nearly tie, any vector of their span draws an
    equally valid picture)."""
    m = a.shape[0]
    if m <= _FULL_EIGH_MAX:
        vals, vecs = torch.linalg.eigh(a)
        return vals.flip(0)[:k], vecs.flip(1)[:, :k]
    b = min(m, k + _SUBSPACE_EXTRA)
    start = torch.randn(m, b, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    q = torch.linalg.qr(a @ start).Q
    scale = None
    for it in range(_SUBSPACE_ITERS):
        aq = a @ q
        vals, v = torch.linalg.eigh(q.T @ aq)               # Rayleigh-Ritz in the current subspace
        vals, v = vals.flip(0), v.flip(1)
        ritz, a_ritz = q @ v[:, :k], aq @ v[:, :k]
        scale = max(float(vals[0]), 1e-300)
        if float((a_ritz - ritz * vals[:k]).norm(dim=0).max()) <= _SUBSPACE_TOL * scale:
            break
        q = torch.linalg.qr(aq).Q
    return vals[:k], ritz


def _top_components(x: torch.Tensor, k: int) -> torch.Tensor:
    """Top-``k`` principal directions of centred tokens ``x`` (N, C), (k', C) with k' ≤ k: those
    with non-negligible variance; from the smaller of X^T X and X X^T."""
    n, c = x.shape
    if n < 2:
        return x.new_zeros((0, c))
    if c <= n:
        vals, vecs = _top_eigh(x.T @ x, k)
        vecs = vecs.T
    else:
        vals, u = _top_eigh(x @ x.T, k)
        vecs = (x.T @ u / vals.clamp_min(1e-300).sqrt()).T
        vecs = vecs / vecs.norm(dim=1, keepdim=True).clamp_min(1e-300)
    total = float((x * x).sum())
    keep = vals > max(total, 1e-300) * 1e-10   # relative to the total variance: rank-deficient directions drop
    return vecs[keep]


def _ranges(proj: torch.Tensor, percentiles: Sequence[float]) -> tuple[torch.Tensor, torch.Tensor]:
    if proj.shape[1] == 0:   # no usable component: nothing to scale
        return proj.new_zeros((0,)), proj.new_zeros((0,))
    q = torch.tensor([percentiles[0] / 100.0, percentiles[1] / 100.0], dtype=torch.float64)
    r = torch.quantile(proj, q, dim=0)     # (2, k)
    return r[0], r[1]


def _check_percentiles(p) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in p)
    except (TypeError, ValueError):
        raise ValueError(f"percentiles: expected two numbers (low, high), got {p!r}") from None
    if not (0.0 <= lo < hi <= 100.0):
        raise ValueError(f"percentiles: expected 0 <= low < high <= 100, got {p!r}")
    return lo, hi


def fit_pca_basis(features_list, hw: Sequence[tuple[int, int] | None] | None = None, *, layout: str | None = None,
                  percentiles: Sequence[float] = DEFAULT_PERCENTILES,
                  outlier_mad: float | None = DEFAULT_OUTLIER_MAD) -> PCABasis:
    """One basis (and one per-channel range) for all images in ``features_list`` (a list of one
    image's features each, any mix of sizes; ``hw``: the (h, w) of each, needed for (h·w, C)
    tokens). Pass the result as ``basis=`` to :func:`pca_rgb` for pictures with comparable colours.
    A single array is also accepted (one image)."""
    if isinstance(features_list, (torch.Tensor, np.ndarray)):
        features_list = [features_list]
        hw = [hw] if hw is not None and not isinstance(hw, list) else hw
    features_list = list(features_list)
    if not features_list:
        raise ValueError("fit_pca_basis: expected at least one image's features, got an empty list")
    if hw is not None and len(hw) != len(features_list):
        raise ValueError(f"fit_pca_basis: {len(features_list)} feature arrays but {len(hw)} (h, w) sizes")
    percentiles = _check_percentiles(percentiles)
    toks = []
    for i, f in enumerate(features_list):
        h, w = (hw[i] if hw is not None and hw[i] is not None else (None, None))
        toks.append(tokens(f, h, w, layout=layout, what=f"features[{i}]")[0])
    dims = {t.shape[1] for t in toks}
    if len(dims) != 1:
        raise ValueError(f"fit_pca_basis: every image needs the same channel count, got {sorted(dims)}")
    return _fit(torch.cat(toks), percentiles, outlier_mad)


def _fit(t: torch.Tensor, percentiles, outlier_mad) -> PCABasis:
    fit_on = _inliers(t, outlier_mad)
    mean = fit_on.mean(dim=0)
    comps = _fix_signs(_top_components(fit_on - mean, 3))
    lo, hi = _ranges((t - mean) @ comps.T, percentiles)
    return PCABasis(mean, comps, lo, hi)


def _normalise_basis(basis: PCABasis, c: int) -> PCABasis:
    if not isinstance(basis, PCABasis):
        raise TypeError(f"basis: expected a fastradio.viz.PCABasis (from fit_pca_basis), got {type(basis).__name__}")
    mean, comps = _as_tensor(basis.mean, "basis.mean"), _as_tensor(basis.components, "basis.components")
    if mean.shape != (c,) or comps.dim() != 2 or comps.shape[1] != c or comps.shape[0] > 3:
        raise ValueError(f"basis: expected mean ({c},) and components (k ≤ 3, {c}) for {c}-channel features, got "
                         f"mean {tuple(mean.shape)} and components {tuple(comps.shape)}")
    _check_finite(comps, "basis.components")
    # A user basis may carry either sign per component; the picture must not depend on it.
    sign = torch.sign(comps.gather(1, comps.abs().argmax(dim=1)[:, None])[:, 0]) if comps.shape[0] else comps[:, 0]
    sign[sign == 0] = 1
    lo, hi = basis.lo, basis.hi
    if lo is not None and hi is not None:
        lo, hi = _as_tensor(lo, "basis.lo"), _as_tensor(hi, "basis.hi")
        # flipping a component mirrors its range: [lo, hi] -> [-hi, -lo]
        lo, hi = torch.where(sign > 0, lo, -hi), torch.where(sign > 0, hi, -lo)
    return PCABasis(mean, comps * sign[:, None], lo, hi)


# -- pictures ----------------------------------------------------------------------------------------

def _to_unit(proj: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    span = hi - lo
    flat = span <= 1e-12 * torch.maximum(hi.abs(), lo.abs()).clamp_min(1e-300)
    y = (proj - lo) / torch.where(flat, torch.ones_like(span), span)
    y = torch.where(flat, torch.full_like(y, 0.5), y)
    return y.clamp(0.0, 1.0)


def _unit_to_rgb(y: torch.Tensor, h: int, w: int) -> np.ndarray:
    """(N, k) in [0, 1] → (h, w, 3) uint8 following the k-component rules of the module docstring."""
    n, k = y.shape
    mid = torch.full((n,), 0.5, dtype=torch.float64)
    if k == 0:
        chans = [mid, mid, mid]
    elif k == 1:
        chans = [y[:, 0]] * 3
    elif k == 2:
        chans = [y[:, 0], y[:, 1], mid]
    else:
        chans = [y[:, 0], y[:, 1], y[:, 2]]
    rgb = torch.stack(chans, dim=1)
    return (rgb * 255.0).round().to(torch.uint8).reshape(h, w, 3).numpy()


def pca_rgb(features, h: int | None = None, w: int | None = None, *, basis: PCABasis | None = None,
            layout: str | None = None, percentiles: Sequence[float] = DEFAULT_PERCENTILES,
            outlier_mad: float | None = DEFAULT_OUTLIER_MAD) -> np.ndarray:
    """The first three principal components of one image's features as an ``(h, w, 3)`` uint8
    picture (see the module docstring). ``basis``: a :class:`PCABasis` (e.g. from
    :func:`fit_pca_basis` over several images) instead of fitting this image alone; its range is
    used when it has one, else this image's ``percentiles``."""
    percentiles = _check_percentiles(percentiles)
    t, h, w = tokens(features, h, w, layout=layout)
    if basis is None:
        basis = _fit(t, percentiles, outlier_mad)
    else:
        basis = _normalise_basis(basis, t.shape[1])
    proj = (t - basis.mean) @ basis.components.T
    lo, hi = (basis.lo, basis.hi) if basis.lo is not None and basis.hi is not None else _ranges(proj, percentiles)
    return _unit_to_rgb(_to_unit(proj, lo, hi), h, w)


def pca_rgb_batch(features_list, hw: Sequence[tuple[int, int] | None] | None = None, *, joint: bool = True,
                  layout: str | None = None, percentiles: Sequence[float] = DEFAULT_PERCENTILES,
                  outlier_mad: float | None = DEFAULT_OUTLIER_MAD) -> list[np.ndarray]:
    """Pictures of several images: with ``joint`` one basis for all (comparable colours), else
    each image on its own."""
    features_list = list(features_list)
    hw_list = list(hw) if hw is not None else [None] * len(features_list)
    if len(hw_list) != len(features_list):
        raise ValueError(f"pca_rgb_batch: {len(features_list)} feature arrays but {len(hw_list)} (h, w) sizes")
    basis = (fit_pca_basis(features_list, hw_list, layout=layout, percentiles=percentiles, outlier_mad=outlier_mad)
             if joint else None)
    return [pca_rgb(f, *(s if s is not None else (None, None)), basis=basis, layout=layout, percentiles=percentiles,
                    outlier_mad=outlier_mad) for f, s in zip(features_list, hw_list)]


# -- token norms -------------------------------------------------------------------------------------

# A heat colour map of our own: near-black → violet → red → orange → pale yellow, luminance rising
# monotonically (≈ 12, 52, 88, 159, 252 on the 0.30/0.59/0.11 scale), so the order of the values
# reads in greyscale prints too.
_HEAT_STOPS = np.array([[10, 10, 30], [90, 20, 120], [200, 40, 70], [245, 140, 30], [255, 250, 200]], dtype=np.float64)


def heat_colors(values) -> np.ndarray:
    """Values in [0, 1] (clamped; any shape) → uint8 RGB, shape + (3,), by linear interpolation
    between the five stops of the map."""
    v = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0)
    pos = v * (len(_HEAT_STOPS) - 1)
    i = np.minimum(pos.astype(np.int64), len(_HEAT_STOPS) - 2)
    f = (pos - i)[..., None]
    rgb = _HEAT_STOPS[i] * (1 - f) + _HEAT_STOPS[i + 1] * f
    return np.round(rgb).astype(np.uint8)


def token_norms(features, h: int | None = None, w: int | None = None, *, layout: str | None = None) -> np.ndarray:
    """The L2 norm of each token, ``(h, w)`` float64."""
    t, h, w = tokens(features, h, w, layout=layout)
    return t.norm(dim=1).reshape(h, w).numpy()


def token_norm_map(features, h: int | None = None, w: int | None = None, *, layout: str | None = None,
                   vmin: float | None = None, vmax: float | None = None) -> np.ndarray:
    """Heat map of the per-token L2 norms, ``(h, w, 3)`` uint8. The colour scale runs linearly
    from ``vmin`` to ``vmax`` (default: this image's smallest and largest norm, no clamping, so
    a high-norm outlier token stands out as the one bright patch). All-equal norms give the
    middle colour."""
    n = token_norms(features, h, w, layout=layout)
    lo = float(n.min()) if vmin is None else float(vmin)
    hi = float(n.max()) if vmax is None else float(vmax)
    if not hi >= lo:
        raise ValueError(f"token_norm_map: expected vmin <= vmax, got vmin={lo}, vmax={hi}")
    span = hi - lo
    u = np.full_like(n, 0.5) if span <= 1e-12 * max(abs(hi), 1e-300) else (n - lo) / span
    return heat_colors(u)


# -- composition -------------------------------------------------------------------------------------

def to_rgb_uint8(image) -> np.ndarray:
    """An image as (H, W, 3) uint8: a PIL image, an (H, W, 3) uint8 array, or a (3, H, W) float
    tensor/array in [0, 1] (what :func:`fastradio.images.read_image` returns)."""
    try:
        from PIL import Image
        if isinstance(image, Image.Image):
            return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    except ImportError:  # pragma: no cover - Pillow is a dependency
        pass
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu()
        image = image.float().numpy() if image.is_floating_point() else image.numpy()
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] == 3 and a.dtype == np.uint8:
        return a
    if a.ndim == 3 and a.shape[0] == 3 and np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise ValueError("image: expected finite values in [0, 1], got NaN/inf")
        return np.round(np.clip(a.transpose(1, 2, 0), 0.0, 1.0) * 255.0).astype(np.uint8)
    raise ValueError(f"image: expected a PIL image, (H, W, 3) uint8 or (3, H, W) float in [0, 1], got shape "
                     f"{a.shape} dtype {a.dtype}")


def upscale(picture, size: Sequence[int], *, mode: str = "nearest") -> np.ndarray:
    """An (h, w, 3) uint8 picture → (H, W, 3) uint8. ``nearest`` (default) shows each patch as a
    block, the honest view of one token per patch; ``bilinear`` smooths between patch centres
    (align_corners=False)."""
    if mode not in ("nearest", "bilinear"):
        raise ValueError(f"upscale: mode must be 'nearest' or 'bilinear', got {mode!r}")
    p = to_rgb_uint8(picture)
    H, W = int(size[0]), int(size[1])
    if H < 1 or W < 1:
        raise ValueError(f"upscale: expected a positive size, got {tuple(size)}")
    if p.shape[:2] == (H, W):
        return p
    x = torch.from_numpy(np.ascontiguousarray(p)).permute(2, 0, 1)[None].double()
    if mode == "nearest":
        # "nearest-exact" picks the source pixel whose area holds each output pixel's centre
        y = F.interpolate(x, size=(H, W), mode="nearest-exact")
    else:
        y = F.interpolate(x, size=(H, W), mode="bilinear", align_corners=False)
    return y[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def side_by_side(image, *pictures, gap: int = 4, background: int = 255, mode: str = "nearest") -> np.ndarray:
    """``image`` and one or more ``pictures`` in a row, each picture upscaled (``mode``) to the
    image's size, ``gap`` pixels of grey level ``background`` between them. (H, W', 3) uint8."""
    if not pictures:
        raise ValueError("side_by_side: expected at least one picture next to the image")
    if gap < 0 or not 0 <= background <= 255:
        raise ValueError(f"side_by_side: expected gap >= 0 and 0 <= background <= 255, got {gap}, {background}")
    img = to_rgb_uint8(image)
    H, W = img.shape[:2]
    parts = [img]
    for p in pictures:
        parts.append(np.full((H, gap, 3), background, dtype=np.uint8))
        parts.append(upscale(p, (H, W), mode=mode))
    return np.concatenate(parts, axis=1)


def save_png(picture, path: str | os.PathLike) -> None:
    """Write an (H, W, 3) uint8 picture as PNG, atomically (temporary name + rename)."""
    from PIL import Image

    from fastradio._io import atomic_path

    a = to_rgb_uint8(picture)
    with atomic_path(path) as tmp, open(tmp, "xb") as f:
        Image.fromarray(np.ascontiguousarray(a)).save(f, format="PNG")
