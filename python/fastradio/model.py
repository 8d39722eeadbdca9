"""The C-RADIO model object (spec/c-radiov2.md §2–§5, §8; C-RADIOv3/v4: spec/radio-family.md).

Module and parameter names mirror the checkpoint: ``state_dict()`` keys are the checkpoint keys
without their ``radio_model.`` prefix, so loading is an explicit one-line key map.

The forward pass works on *packed* tokens: every image's ``P + h*w`` tokens (P prefix tokens:
8 for C-RADIOv2/v3, 10 for C-RADIOv4) are rows of one
(N, D) matrix and ``cu_seqlens`` marks where each image starts. A uniform batch is the special
case of equal lengths; a list of differently sized images is packed without padding. Row-wise
ops (LayerNorm, GEMMs) cannot mix images and attention is block-diagonal, so a NaN in one image
never reaches another. All compute goes through ``fastradio.ops`` via a per-(device, dtype)
:class:`~fastradio.ops.Plan`; this file knows no backend.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch
from torch import nn

from . import ops, vitdet
from .compat import LayerNorm, Linear, NotCalledByForward, ReferenceSurface, Resolution, has_forward_hooks
from .configs import ModelConfig
from .validation import check_image, check_image_batch, check_value_range, nearest_supported

__all__ = ["RadioOutput", "Resolution", "RadioModel"]

_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class RadioOutput(NamedTuple):
    """``summary`` (B, k·D): the CLS tokens of the checkpoint's ``summary_idxs`` concatenated
    (C-RADIOv2/v3: clip, siglip, dino_v2, k = 3; C-RADIOv4: k = 2); ``features`` (B, h·w, D)
    row-major patch tokens ("NLC"), or (B, D, h, w) with "NCHW". Unpacks like the reference's
    ``summary, features = model(x)``; ``.to(...)`` and ``.float()`` apply to both tensors, so a
    bf16 output becomes numpy-ready in one call (``out.float().features.cpu().numpy()``)."""

    summary: torch.Tensor
    features: torch.Tensor

    def to(self, *args, **kwargs) -> "RadioOutput":
        """``Tensor.to`` (dtype, device, ``non_blocking``, ...) applied to summary and features."""
        return RadioOutput(self.summary.to(*args, **kwargs), self.features.to(*args, **kwargs))

    def float(self) -> "RadioOutput":
        """Both tensors as float32."""
        return RadioOutput(self.summary.float(), self.features.float())


# -- modules, named like the checkpoint ---------------------------------------------------------

class InputConditioner(nn.Module):
    """``y = (x - mean) / std`` per channel, in fp32. Returned by make_preprocessor_external()."""

    def __init__(self):
        super().__init__()
        self.register_buffer("norm_mean", torch.tensor(_CLIP_MEAN).view(3, 1, 1))
        self.register_buffer("norm_std", torch.tensor(_CLIP_STD).view(3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() - self.norm_mean.float()) / self.norm_std.float()


class _ClsToken(NotCalledByForward, nn.Module):
    def __init__(self, n: int, d: int):
        super().__init__()
        self.token = nn.Parameter(torch.empty(n, d))


class PatchGenerator(NotCalledByForward, nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.embed_dim
        self.pos_embed = nn.Parameter(torch.empty(1, cfg.pos_grid**2, d))
        self.embedder = Linear(cfg.patch_features, d, bias=False)
        self.cls_token = _ClsToken(cfg.num_prefix_tokens, d)
        # The reference's attribute names (read by code written for it): num_skip is every prefix
        # token before the patches (CLS + registers: 8, C-RADIOv4: 10).
        self.patch_size = cfg.patch_size
        self.num_cls_tokens = cfg.num_cls_tokens
        self.num_registers = cfg.num_registers
        self.num_skip = cfg.num_prefix_tokens
        self.embed_dim = d


class Attention(NotCalledByForward, nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.qkv = Linear(d, 3 * d)
        self.proj = Linear(d, d)


class Mlp(NotCalledByForward, nn.Module):
    def __init__(self, d: int, hidden: int):
        super().__init__()
        self.fc1 = Linear(d, hidden)
        self.fc2 = Linear(hidden, d)


class LayerScale(NotCalledByForward, nn.Module):
    """Per-channel scale γ of a residual branch (C-RADIOv3-B/L); the Hub files call it ``grandma``."""

    def __init__(self, d: int):
        super().__init__()
        self.grandma = nn.Parameter(torch.empty(d))


class Block(nn.Module):
    """One pre-norm transformer block. The model runs its math through :meth:`step` (fused with
    its neighbours: a block's last residual add happens inside the next block's LayerNorm); when
    a forward hook is registered on the block, the model calls the block itself instead, so the
    hook fires with the reference's tensors (DESIGN.md decision 23)."""

    def __init__(self, cfg: ModelConfig, index: int):
        super().__init__()
        d = cfg.embed_dim
        self.norm1 = LayerNorm(d, eps=cfg.ln_eps)
        self.attn = Attention(d)
        self.norm2 = LayerNorm(d, eps=cfg.ln_eps)
        self.mlp = Mlp(d, cfg.mlp_hidden)
        if cfg.layer_scale:
            self.ls1 = LayerScale(d)
            self.ls2 = LayerScale(d)
        self.index = index
        self._cfg = cfg
        #: 1/sqrt(i+1) on both LayerNorm outputs of block i when the config asks for scaled_ln
        self.ln_scale = 1.0 / math.sqrt(index + 1) if cfg.scaled_ln else 1.0

    def step(self, x: torch.Tensor, delta: torch.Tensor | None, cu_seqlens: torch.Tensor, max_seqlen: int,
             plan: ops.Plan, folded: tuple[torch.Tensor, ...] | None = None,
             order: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The block on packed tokens: x (N, D) residual stream, delta (N, D) the previous block's
        last branch not added yet (or None) → (x, delta): the residual after the attention branch
        and the MLP branch, whose add the caller fuses into the next LayerNorm (or does).

        Each residual add is fused into the LayerNorm that follows it (``add_layer_norm``:
        ``x += delta; a = LN(x)``), so the GEMMs write plain deltas and the residual stream can
        stay in its own dtype. Layer-scale (x += γ·branch) scales the deltas: literally when
        ``folded`` is None, else ``folded`` = (proj.weight', proj.bias', fc2.weight', fc2.bias')
        with γ folded in (the fast backends). ``order`` (ViTDet global blocks, :mod:`fastradio.vitdet`):
        the rows in the order ``cu_seqlens`` delimits for attention; the other ops are row-wise."""
        cfg, s = self._cfg, self.ln_scale
        ls = cfg.layer_scale and folded is None
        if folded is not None:
            proj_w, proj_b, fc2_w, fc2_b = folded
        else:
            proj_w, proj_b = self.attn.proj.weight, self.attn.proj.bias
            fc2_w, fc2_b = self.mlp.fc2.weight, self.mlp.fc2.bias
        x, a = plan.add_layer_norm(x, delta, self.norm1.weight, self.norm1.bias, cfg.ln_eps)
        if s != 1.0:
            a = a * s
        qkv = plan.linear(a, self.attn.qkv.weight, self.attn.qkv.bias, "none", None)
        if order is not None:
            qkv = qkv.index_select(0, order)
        o = plan.attention(qkv, cu_seqlens, max_seqlen, cfg.num_heads, cfg.head_dim)
        if order is not None:
            o = torch.empty_like(o).index_copy_(0, order, o)
        delta = plan.linear(o, proj_w, proj_b, "none", None)
        if ls:
            delta = delta * self.ls1.grandma
        x, a = plan.add_layer_norm(x, delta, self.norm2.weight, self.norm2.bias, cfg.ln_eps)
        if s != 1.0:
            a = a * s
        hid = plan.linear(a, self.mlp.fc1.weight, self.mlp.fc1.bias, "gelu", None)
        delta = plan.linear(hid, fc2_w, fc2_b, "none", None)
        if ls:
            delta = delta * self.ls2.grandma
        return x, delta

    def forward(self, x: torch.Tensor, cu_seqlens: torch.Tensor | None = None, max_seqlen: int | None = None, *,
                plan: ops.Plan | None = None, folded: tuple[torch.Tensor, ...] | None = None) -> torch.Tensor:
        """x (B, T, D) tokens, prefix tokens first (the reference block's input) → the block's
        output (B, T, D) in x's dtype. The model calls it with its residual stream (the compute
        dtype; fp32 in fp16 mode), its ``plan`` and layer-scale ``folded`` weights; a list of
        images comes as (1, N, D) packed tokens with their ``cu_seqlens`` and ``max_seqlen``.
        Called alone (tests, exploration) it resolves the "auto" plan for its weights."""
        if x.dim() != 3 or x.shape[-1] != self._cfg.embed_dim:
            raise ValueError(f"block {self.index}: expected tokens (B, T, {self._cfg.embed_dim}), got {tuple(x.shape)}")
        b, t, d = x.shape
        w = self.norm1.weight
        if plan is None:
            plan = ops.plan("auto", w.device, w.dtype, head_dim=self._cfg.head_dim)
        if cu_seqlens is None:
            cu_seqlens = torch.arange(0, (b + 1) * t, t, dtype=torch.int32, device=x.device)
            max_seqlen = t
        rdt = torch.float32 if w.dtype == torch.float16 else w.dtype
        y, delta = self.step(x.reshape(b * t, d).to(rdt), None, cu_seqlens, max_seqlen, plan, folded)
        return (y + delta.to(y.dtype)).to(x.dtype).view(b, t, d)


class VisionTransformer(NotCalledByForward, nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.patch_generator = PatchGenerator(cfg)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.depth))
        if cfg.reg_token_rows:
            # Present in C-RADIOv3-B/L checkpoints and unused by the forward pass (radio-family §1).
            self.reg_token = nn.Parameter(torch.empty(1, cfg.reg_token_rows, cfg.embed_dim))
        # The reference's attribute names (read by code written for it).
        self.embed_dim = cfg.embed_dim
        self.num_cls_tokens = cfg.num_cls_tokens
        self.num_registers = cfg.num_registers


class FeatureNormalizer(nn.Module):
    """features ← (features − mean)·txᵀ (optional; only when the checkpoint carries it)."""

    def __init__(self, d: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(d))
        self.register_buffer("tx", torch.eye(d))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return torch.matmul(f - self.mean.to(f.dtype), self.tx.to(f.dtype).t())


# -- the model ----------------------------------------------------------------------------------

class RadioModel(ReferenceSurface, nn.Module):
    """C-RADIO encoder (v2, v3, v4). Build with :func:`fastradio.load` (or
    ``RadioModel.from_pretrained``, the same); ``RadioModel(config)`` gives uninitialised weights
    (use ``load_state_dict``); the config must have ``align_corners`` decided
    (:func:`fastradio.align.decide`). The reference's attribute names (``radio_model``,
    ``model.blocks``, ``adaptors``, ...) come from :class:`fastradio.compat.ReferenceSurface`.

    Call ``model(x, feature_fmt="NLC")`` with x (B, 3, H, W) float RGB in [0, 1] (H, W multiples of
    ``min_resolution_step``) or a list of (3, H_i, W_i) images; see :meth:`forward`.
    """

    def __init__(self, config: ModelConfig, *, backend: str = "auto", name: str | None = None):
        super().__init__()
        if config.align_corners is None:
            raise ValueError(
                "config.align_corners is None: how this checkpoint resizes its position table is not decided "
                "(load it with fastradio.load, or decide it with fastradio.align.decide / "
                "config.with_(align_corners=...))")
        vitdet.check_options(config.window_size, config.window_num_global, config.depth)
        self.config = config
        self.name = name or config.arch.timm_name
        self.input_conditioner: nn.Module = InputConditioner()
        self.model = VisionTransformer(config)
        idxs = config.summary_idxs if config.summary_idxs is not None else range(min(3, config.num_cls_tokens))
        self.register_buffer("summary_idxs", torch.tensor(list(idxs), dtype=torch.int64))
        # nn.Identity when the checkpoint has none, like the reference (code calls it unconditionally).
        self.feature_normalizer: nn.Module = (FeatureNormalizer(config.embed_dim) if config.has_feature_normalizer
                                              else nn.Identity())
        #: the reference's teacher adaptor heads: none (Hub checkpoints carry none; not implemented)
        self.adaptors = nn.ModuleDict()
        #: what decided the compute dtype at load (fastradio.load sets it)
        self.dtype_source: str | None = None
        #: refuse inputs far outside [0, 1] (one device sync per call; off under torch.compile)
        self.check_input_range = True
        self._external_preprocessor = False
        self._backend = backend
        self._plan: ops.Plan | None = None
        self._pos_cache: dict[tuple[int, int, bool], torch.Tensor] = {}
        # ViTDet row layouts per (grids, device): built on the host, so cached to keep warm calls
        # free of host-to-device copies (CUDA-graph capture allows none).
        self._layout_cache: dict[tuple, vitdet.Layout] = {}
        # Input normalisation folded into the patch embedding (see _folded_embedder): the cached
        # result, and the fp32 weight it is best computed from when the model was cast down.
        self._fold_cache: tuple[tuple, tuple[torch.Tensor, torch.Tensor]] | None = None
        self._fold_src: tuple[tuple, torch.Tensor] | None = None
        # Layer-scale folded into proj and fc2 (see _folded_block): per block, (the key of the six
        # source tensors, (proj.weight', proj.bias', fc2.weight', fc2.bias')). None = automatic.
        self._ls_fold: dict[int, tuple[tuple, tuple[torch.Tensor, ...]]] = {}
        self.fold_layer_scale: bool | None = None

    # -- properties of spec §8 -------------------------------------------------------------------
    @property
    def patch_size(self) -> int:
        return self.config.patch_size

    @property
    def max_resolution(self) -> int:
        return self.config.max_resolution

    @property
    def preferred_resolution(self) -> Resolution:
        return Resolution(*self.config.preferred_resolution)

    @property
    def window_size(self) -> int | None:
        return self.config.window_size

    @property
    def min_resolution_step(self) -> int:
        return self.config.min_resolution_step

    @property
    def num_summary_tokens(self) -> int:
        """Prefix tokens (CLS + registers) before the patch tokens: 8, or 10 for C-RADIOv4."""
        return self.config.num_prefix_tokens

    @property
    def num_cls_tokens(self) -> int:
        return self.config.num_cls_tokens

    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    @property
    def summary_dim(self) -> int:
        return self.summary_idxs.numel() * self.config.embed_dim

    @property
    def adaptor_names(self) -> list[str]:
        return []

    @property
    def dtype(self) -> torch.dtype:
        """Compute dtype (the position table stays fp32 whatever this is)."""
        return self.model.patch_generator.embedder.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.model.patch_generator.embedder.weight.device

    @property
    def backend(self) -> str:
        return self._backend

    @property
    def plan(self) -> ops.Plan:
        """Which backend runs each op for the model's current device and dtype."""
        if self._plan is None or self._plan.device != self.device or self._plan.dtype != self.dtype:
            self._plan = ops.plan(self._backend, self.device, self.dtype, head_dim=self.config.head_dim)
        return self._plan

    def set_backend(self, backend: str) -> "RadioModel":
        """Choose "auto" or one backend for every op (ops it lacks fall back to the reference)."""
        self._backend = backend
        self._plan = None
        self._pos_cache.clear()
        self.plan  # resolve now so refusals surface here, not in forward
        return self

    def _resolve_plan(self) -> None:
        """Resolve the plan now, outside any graph, so ``torch.compile(model, fullgraph=True)``
        and ``torch.export`` never trace the backend look-up (it imports modules and asks the
        backends). A refusal is left for the forward pass to report (a ``.double()`` model must
        still be constructible); meta tensors have no plan."""
        self._plan = None
        if self.device.type == "meta":
            return
        try:
            self.plan
        except Exception:  # noqa: BLE001  (reported by the forward pass, with the reasons)
            self._plan = None

    # -- methods of spec §8 ------------------------------------------------------------------------
    def get_nearest_supported_resolution(self, height: int, width: int) -> Resolution:
        return Resolution(*nearest_supported(height, width, self.min_resolution_step))

    def make_preprocessor_external(self) -> nn.Module:
        """Remove the input normalisation from the model and return it; the caller then feeds
        normalised input (and the [0, 1] range check no longer applies)."""
        conditioner = self.input_conditioner
        self.input_conditioner = nn.Identity()
        self._external_preprocessor = True
        return conditioner

    # -- nn.Module plumbing -------------------------------------------------------------------------
    def _apply(self, fn, recurse=True):
        # Device moves apply to the position table, dtype casts do not: the resize is always fp32
        # (spec §3), so keep the fp32 values and only follow the device.
        pe = self.model.patch_generator.pos_embed
        keep = pe.data if pe.dtype == torch.float32 else None
        # The input normalisation's constants stay fp32 too (bf16 would move CLIP's std by ~0.1 %).
        cond = {n: b.data for n, b in self.input_conditioner.named_buffers() if b.dtype == torch.float32}
        emb = self.model.patch_generator.embedder
        src = emb.weight.detach() if emb.weight.dtype == torch.float32 else None
        carried = self._ls_fold_to_carry(fn)
        out = super()._apply(fn, recurse)
        # The layer-scale folds follow the weights (device, dtype), re-keyed to the new tensors.
        self._ls_fold = {i: (self._ls_key(i), tuple(fn(t) for t in ts)) for i, ts in carried.items()}
        if keep is not None and pe.dtype != torch.float32:
            pe.data = keep.to(device=pe.device)
        for n, buf in self.input_conditioner.named_buffers():
            if n in cond and buf.dtype != torch.float32:
                buf.data = cond[n].to(device=buf.device)
        if src is not None and emb.weight.dtype != torch.float32:
            # Cast down: keep the fp32 embedding weight so the folded weight is rounded only once.
            self._fold_src = (self._weight_key(emb.weight), src)
        elif emb.weight.dtype == torch.float32:
            self._fold_src = None
        self._pos_cache.clear()
        self._fold_cache = None
        self._resolve_plan()
        return out

    def _load_from_state_dict(self, *args, **kwargs):
        self._pos_cache.clear()
        self._fold_cache = None
        self._fold_src = None
        self._ls_fold = {}
        return super()._load_from_state_dict(*args, **kwargs)

    # -- layer-scale ---------------------------------------------------------------------------------
    @property
    def folds_layer_scale(self) -> bool:
        """Whether layer-scale (C-RADIOv3-B/L) is folded into the proj and fc2 weights: when a fast
        backend runs ``linear`` (the reference backend applies γ literally, as the spec writes it).
        ``model.fold_layer_scale = True/False`` forces it (tests); None is automatic."""
        if not self.config.layer_scale:
            return False
        if self.fold_layer_scale is not None:
            return bool(self.fold_layer_scale)
        return self.plan.names["linear"] != "reference"

    def _ls_sources(self, i: int) -> tuple[torch.Tensor, ...]:
        blk = self.model.blocks[i]
        return (blk.attn.proj.weight, blk.attn.proj.bias, blk.ls1.grandma,
                blk.mlp.fc2.weight, blk.mlp.fc2.bias, blk.ls2.grandma)

    def _ls_key(self, i: int) -> tuple:
        return tuple(self._weight_key(t) for t in self._ls_sources(i))

    @staticmethod
    def _fold_ls(pw, pb, g1, fw, fb, g2) -> tuple[torch.Tensor, ...]:
        """W' = diag(γ)·W and b' = γ·b for proj (γ₁) and fc2 (γ₂), in fp32, one rounding to the
        weights' dtype: x + γ⊙(a·Wᵀ + b) = x + a·(diag(γ)·W)ᵀ + γ⊙b exactly in real arithmetic."""
        dt = pw.dtype
        f = [t.detach().float() for t in (pw, pb, g1, fw, fb, g2)]
        return ((f[2][:, None] * f[0]).to(dt).contiguous(), (f[2] * f[1]).to(dt),
                (f[5][:, None] * f[3]).to(dt).contiguous(), (f[5] * f[4]).to(dt))

    def _folded_block(self, i: int) -> tuple[torch.Tensor, ...]:
        """(proj.weight', proj.bias', fc2.weight', fc2.bias') of block i with layer-scale folded in.
        Prepared when the model is cast down from fp32 (from the fp32 weights: one rounding, see
        _ls_fold_to_carry), else computed here from the current weights in fp32; cached while the
        six source tensors are unchanged (a change of any of them recomputes; from weights that
        are already low-precision that is a second rounding). Under torch.compile the fold
        prepared before compiling is used, or computed inside the graph when there is none."""
        if torch.compiler.is_compiling():
            entry = self._ls_fold.get(i)
            return entry[1] if entry is not None else self._fold_ls(*self._ls_sources(i))
        key = self._ls_key(i)
        entry = self._ls_fold.get(i)
        if entry is not None and entry[0] == key:
            return entry[1]
        out = self._fold_ls(*self._ls_sources(i))
        self._ls_fold[i] = (key, out)
        return out

    def _ls_fold_to_carry(self, fn) -> dict[int, tuple[torch.Tensor, ...]]:
        """Before ``_apply(fn)``: the layer-scale folds to carry through it. When ``fn`` casts fp32
        weights down and the model will run a fast backend, the folds are computed now from the
        fp32 weights (so they are rounded once, like the input-normalisation fold of DESIGN
        decision 15, without keeping fp32 copies); when ``fn`` keeps the dtype (a device move),
        valid cached folds are carried; otherwise they are dropped (recomputed when needed)."""
        if not self.config.layer_scale:
            return {}
        w = self.model.blocks[0].attn.proj.weight
        if w.device.type == "meta":
            return {}
        try:
            probe = fn(torch.zeros((), dtype=w.dtype, device=w.device))
        except Exception:  # noqa: BLE001  (an fn that cannot take a probe: carry nothing)
            return {}
        if not isinstance(probe, torch.Tensor):
            return {}
        casts_down = w.dtype == torch.float32 and probe.dtype in (torch.float16, torch.bfloat16)
        if casts_down:
            if self.fold_layer_scale is not None:
                fast = bool(self.fold_layer_scale)
            else:  # the plan after the cast is not known yet: "auto" runs the reference on CPU only
                fast = self._backend in ("triton", "cuda") or (self._backend == "auto" and probe.device.type != "cpu")
            return {i: self._fold_ls(*self._ls_sources(i)) for i in range(self.config.depth)} if fast else {}
        if probe.dtype != w.dtype:
            return {}
        carry = {}
        for i in range(self.config.depth):
            entry = self._ls_fold.get(i)
            if entry is not None and entry[0] == self._ls_key(i):
                carry[i] = entry[1]
        return carry

    # -- forward -----------------------------------------------------------------------------------
    def forward(self, x, feature_fmt: str = "NLC"):
        """x: (B, 3, H, W) float RGB in [0, 1] → RadioOutput(summary (B, summary_dim), features);
        or a list of (3, H_i, W_i) images → list of RadioOutput, each with batch size 1, equal to
        calling the model on each image alone (they are packed into one sequence, not padded).

        features: (B, h·w, D) for ``feature_fmt="NLC"``, (B, D, h, w) for ``"NCHW"``;
        h = H / patch_size, w = W / patch_size. Outputs are in the model's dtype.
        """
        if feature_fmt not in ("NLC", "NCHW"):
            raise ValueError(f"feature_fmt: expected 'NLC' or 'NCHW', got {feature_fmt!r}")
        if isinstance(x, (list, tuple)):
            return self._forward_list(list(x), feature_fmt)
        check_image_batch(x, self.min_resolution_step, self.device)
        self._maybe_check_range(x, "input")
        b, _, hh, ww = x.shape
        h, w = hh // self.patch_size, ww // self.patch_size
        tokens = self._embed(x)                                     # (B, T, D)
        t = tokens.shape[1]
        cu_seqlens = torch.arange(0, (b + 1) * t, t, dtype=torch.int32, device=x.device)
        d = self.embed_dim
        y = self._run(tokens.reshape(b * t, d), [(h, w)] * b, cu_seqlens, t)[self.config.depth - 1].view(b, t, d)
        return self._outputs(y, h, w, feature_fmt)

    def forward_features(self, x) -> RadioOutput:
        return self.forward(x)

    def _maybe_check_range(self, x: torch.Tensor, what: str) -> None:
        if self.check_input_range and not self._external_preprocessor and not _tracing(x):
            check_value_range(x, what)

    def _forward_list(self, images: list, feature_fmt: str) -> list[RadioOutput]:
        step = self.min_resolution_step
        for i, img in enumerate(images):
            check_image(img, i, step, self.device)
            self._maybe_check_range(img, f"image {i} of the list")
        if not images:
            return []
        # Embed same-size images together, then pack every image's tokens in the caller's order.
        groups: dict[tuple[int, int], list[int]] = {}
        for i, img in enumerate(images):
            groups.setdefault(tuple(img.shape[1:]), []).append(i)
        per_image: list[torch.Tensor | None] = [None] * len(images)
        for idx in groups.values():
            tok = self._embed(torch.stack([images[i] for i in idx]))
            for j, i in enumerate(idx):
                per_image[i] = tok[j]
        lens = [t.shape[0] for t in per_image]
        cu_seqlens = torch.tensor([0, *lens], dtype=torch.int32).cumsum(0, dtype=torch.int32).to(self.device)
        packed = torch.cat(per_image, dim=0)                        # (sum T_i, D)
        grids = [(img.shape[1] // self.patch_size, img.shape[2] // self.patch_size) for img in images]
        y = self._run(packed, grids, cu_seqlens, max(lens))[self.config.depth - 1]
        outs = []
        for img, seg in zip(images, torch.split(y, lens, dim=0)):
            h, w = img.shape[1] // self.patch_size, img.shape[2] // self.patch_size
            outs.append(self._outputs(seg.unsqueeze(0), h, w, feature_fmt))
        return outs

    def _pos_table(self, h: int, w: int, shift: torch.Tensor | None = None) -> torch.Tensor:
        """Position embeddings for an h x w grid, (h*w, D) in the compute dtype; cached per grid.
        ``shift`` (D,) fp32, the folded normalisation's constant, is added in fp32 before rounding."""
        key = (h, w, shift is not None)
        cached = None if torch.compiler.is_compiling() else self._pos_cache.get(key)
        if cached is not None:
            return cached
        g, d = self.config.pos_grid, self.embed_dim
        table = self.model.patch_generator.pos_embed.view(g, g, d)
        ac = self.config.align_corners
        if shift is None:
            pos = self.plan.pos_embed(table, h, w, self.dtype, ac)
        else:
            pos = (self.plan.pos_embed(table, h, w, torch.float32, ac) + shift).to(self.dtype)
        if not torch.compiler.is_compiling():
            self._pos_cache[key] = pos
        return pos

    @staticmethod
    def _weight_key(w: torch.Tensor) -> tuple:
        return (w.data_ptr(), w._version, w.dtype, w.device)

    @property
    def folds_input_norm(self) -> bool:
        """Whether the input normalisation is folded into the patch embedding: when the
        preprocessor is internal and a fast backend runs patch_embed (the reference backend keeps
        the spec's literal order, normalise then embed). Not while a forward hook is on the
        conditioner: it is then called, so the hook fires."""
        return (not self._external_preprocessor and self.plan.names["patch_embed"] != "reference"
                and not has_forward_hooks(self.input_conditioner))

    def _folded_embedder(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(W', shift): patch_embed(x, W') + shift == patch_embed((x - mean) / std, W) for raw
        pixels x. With y_f = (x_f - m_c) / s_c for feature f of channel c (f = c*256 + ...):
        W·y = (W / s)·x - (W / s)·m, so W' = W / s (per input channel) and shift = -W'·m, a
        constant per output channel that rides on the fp32 position table. Computed in fp32 from
        the fp32 weight when the model was cast down (one rounding to the compute dtype), cached
        while the weight and the conditioner are unchanged. Saves the normalisation pass over the
        image and its fp32 temporary."""
        emb = self.model.patch_generator.embedder.weight
        cond = self.input_conditioner
        src = emb
        if torch.compiler.is_compiling():
            # Traced (torch.compile, torch.export): computed in the graph, from the fp32 weight kept
            # at the cast when there is one (unchecked: fake tensors have no data pointer to key on).
            if self._fold_src is not None:
                src = self._fold_src[1]
            return self._fold_embedder(src, emb.dtype, emb.device, cond)
        key = (self._weight_key(emb), self._weight_key(cond.norm_mean), self._weight_key(cond.norm_std))
        if self._fold_cache is not None and self._fold_cache[0] == key:
            return self._fold_cache[1]
        if self._fold_src is not None and self._fold_src[0] == self._weight_key(emb):
            src = self._fold_src[1]
        out = self._fold_embedder(src, emb.dtype, emb.device, cond)
        self._fold_cache = (key, out)
        return out

    def _fold_embedder(self, src: torch.Tensor, dtype: torch.dtype, device: torch.device,
                       cond: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        w32 = src.detach().to(device=device, dtype=torch.float32)
        per_feature = self.patch_size * self.patch_size
        inv_std = (1.0 / cond.norm_std.float().view(3)).repeat_interleave(per_feature)     # (768,)
        mean = cond.norm_mean.float().view(3).repeat_interleave(per_feature)
        w_folded = w32 * inv_std
        shift = -(w_folded @ mean)                                                          # (D,)
        return w_folded.to(dtype).contiguous(), shift.contiguous()

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) → tokens (B, P + h*w, D): conditioner, patch embed, position, prefix."""
        h, w = x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size
        pg = self.model.patch_generator
        if self.folds_input_norm:
            weight, shift = self._folded_embedder()
            x = x.to(self.dtype).contiguous()
            return self.plan.patch_embed(x, weight, self._pos_table(h, w, shift), pg.cls_token.token)
        x = self.input_conditioner(x).to(self.dtype).contiguous()  # kernels take NCHW-contiguous
        return self.plan.patch_embed(x, pg.embedder.weight, self._pos_table(h, w), pg.cls_token.token)

    @property
    def residual_dtype(self) -> torch.dtype:
        """dtype of the residual stream: fp32 in fp16 mode (trained ViTs carry outlier activations
        beyond fp16's range), else the compute dtype (bf16 has fp32's range)."""
        return torch.float32 if self.dtype == torch.float16 else self.dtype

    def _run(self, x: torch.Tensor, grids: list[tuple[int, int]], cu_seqlens: torch.Tensor, max_seqlen: int,
             keep: Sequence[int] | None = None) -> dict[int, torch.Tensor]:
        """The blocks on the packed embedding x (N, D) of images with patch grids ``grids``:
        {i: output of block i (N, D), packed order} for i in ``keep`` (default: the last block)."""
        if self.config.window_size is None or x.shape[0] == 0:
            return self._blocks(x, cu_seqlens, max_seqlen, keep)
        return self._blocks_windowed(x, grids, keep)

    def _blocks_windowed(self, x: torch.Tensor, grids: list[tuple[int, int]],
                         keep: Sequence[int] | None = None) -> dict[int, torch.Tensor]:
        """:meth:`_blocks` with ViTDet windows (spec §7, DESIGN.md decision 26; the row layout is
        described in :mod:`fastradio.vitdet`). The prefix rows (xq, dq: value xq + dq) are set aside
        during windowed blocks: those run on the patch rows (xp, dp) alone, one segment per
        window. A global block runs on all rows; after windowed blocks its input is the two parts
        joined (one copy of x and of the pending delta: ``add_layer_norm`` writes a new tensor, so
        the patch rows cannot be updated in place). Outputs leave the layout with one index_select."""
        cfg, p = self.config, self.plan
        if any(has_forward_hooks(blk) for blk in self.model.blocks):
            raise NotImplementedError(
                "forward hooks on blocks are not supported with ViTDet windowed attention (the blocks run on "
                "window-major patch rows); take block outputs with model.forward_intermediates(x, indices=[...])")
        lay = self._layout(grids, x.device)
        windowed = cfg.window_schedule
        keep = {cfg.depth - 1} if keep is None else set(keep)
        fold = cfg.layer_scale and self.folds_layer_scale
        m = lay.patches
        full = x.index_select(0, lay.perm).to(self.residual_dtype)   # enter the layout: one copy
        full_d = None
        xp, xq, dp, dq = full[:m], full[m:], None, None
        outs = {}

        def joined(a, b, like):
            if a is None and b is None:
                return None
            a = torch.zeros((m, like.shape[1]), dtype=b.dtype, device=b.device) if a is None else a
            b = torch.zeros((like.shape[0] - m, like.shape[1]), dtype=a.dtype, device=a.device) if b is None else b
            return torch.cat([a, b])

        for i, blk in enumerate(self.model.blocks[:max(keep) + 1]):
            folded = self._folded_block(i) if fold else None
            if windowed[i]:
                xp, dp = blk.step(xp, dp, lay.win_cu, lay.win_len, p, folded)
                full = full_d = None
            else:
                if full is None:
                    full = torch.cat([xp, xq])
                    full_d = joined(dp, dq, full)
                full, full_d = blk.step(full, full_d, lay.glob_cu, lay.glob_len, p, folded, order=lay.glob_order)
                xp, xq, dp, dq = full[:m], full[m:], full_d[:m], full_d[m:]
            if i in keep:
                if full is not None:
                    y = full + full_d.to(full.dtype)
                else:
                    y = torch.cat([xp if dp is None else xp + dp.to(xp.dtype),
                                   xq if dq is None else xq + dq.to(xq.dtype)])
                outs[i] = y.to(self.dtype).index_select(0, lay.inv)   # leave the layout
        return outs

    def _layout(self, grids: list[tuple[int, int]], device: torch.device) -> vitdet.Layout:
        cfg = self.config
        key = (tuple(grids), cfg.window_size, cfg.num_prefix_tokens, device)
        if torch.compiler.is_compiling():
            return vitdet.layout(grids, cfg.num_prefix_tokens, cfg.window_size, device)
        lay = self._layout_cache.get(key)
        if lay is None:
            if len(self._layout_cache) >= 32:   # many distinct list shapes: keep memory bounded
                self._layout_cache.clear()
            lay = self._layout_cache[key] = vitdet.layout(grids, cfg.num_prefix_tokens, cfg.window_size, device)
        return lay

    def _blocks(self, x: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int,
                keep: Sequence[int] | None = None) -> dict[int, torch.Tensor]:
        """Run the blocks on packed tokens (N, D) up to the last index in ``keep`` (default: the
        last block) and return {i: output of block i} for i in ``keep``, in the compute dtype.

        A block runs fused (:meth:`Block.step`: its last residual add is done inside the next
        block's LayerNorm) unless a forward hook is registered on it; then its pending input add
        is done here and the block is *called* (its ``__call__``, so the hooks fire and may
        replace the output) on (B, T, D) tokens, or (1, N, D) for a packed list, with the same
        ops (DESIGN.md decision 23). Layer-scale: literally on the reference backend, folded
        into proj/fc2 on the fast ones (``folds_layer_scale``)."""
        cfg, p = self.config, self.plan
        x = x.to(self.residual_dtype)
        keep = {cfg.depth - 1} if keep is None else set(keep)
        fold = cfg.layer_scale and self.folds_layer_scale
        delta = None
        outs = {}
        for i, blk in enumerate(self.model.blocks[:max(keep) + 1]):
            folded = self._folded_block(i) if fold else None
            if has_forward_hooks(blk):
                if delta is not None:
                    x = x + delta.to(x.dtype)
                x, delta = self._call_block(blk, x, cu_seqlens, max_seqlen, folded), None
            else:
                x, delta = blk.step(x, delta, cu_seqlens, max_seqlen, p, folded)
            if i in keep:  # otherwise the add happens inside the next block's add_layer_norm
                outs[i] = (x if delta is None else x + delta.to(x.dtype)).to(self.dtype)
        return outs

    def _call_block(self, blk: Block, x: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int,
                    folded: tuple[torch.Tensor, ...] | None) -> torch.Tensor:
        """A hooked block through its ``__call__``: x (N, D) packed → (N, D). The hooks see what
        the reference's blocks see, (B, T, D) for a uniform batch; a packed list of different
        sizes is (1, N, D)."""
        n, d = x.shape
        s = cu_seqlens.shape[0] - 1
        shape = (s, max_seqlen, d) if n == s * max_seqlen else (1, n, d)  # equal lengths iff uniform
        # Only the tokens are positional: hooks get args == (x,), as from the reference's blocks,
        # and a pre-hook that replaces them keeps the packing (cu_seqlens travels as a keyword).
        y = blk(x.view(shape), cu_seqlens=cu_seqlens, max_seqlen=max_seqlen, plan=self.plan, folded=folded)
        if not isinstance(y, torch.Tensor) or y.shape != shape:
            got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise ValueError(f"a forward hook on block {blk.index} returned {got}; expected a tensor of the "
                             f"block's output shape {shape} (return None to keep the output)")
        return y.reshape(n, d).to(x.dtype)

    def _outputs(self, y: torch.Tensor, h: int, w: int, feature_fmt: str,
                 final: bool = True) -> RadioOutput:
        """y (B, T, D) → RadioOutput; summary from the checkpoint's summary_idxs. The feature
        normaliser applies to the final features only."""
        b, _, d = y.shape
        summary = y.index_select(1, self.summary_idxs).reshape(b, self.summary_idxs.numel() * d)
        features = y[:, self.num_summary_tokens:]
        if final:
            features = self.feature_normalizer(features)  # nn.Identity when the checkpoint has none
        if feature_fmt == "NCHW":
            features = features.reshape(b, h, w, d).permute(0, 3, 1, 2)
        return RadioOutput(summary, features)

    # -- intermediates -----------------------------------------------------------------------------
    def forward_intermediates(self, x: torch.Tensor, indices: int | Sequence[int] | None = None,
                              return_prefix_tokens: bool = False, norm: bool = False,
                              stop_early: bool = False, output_fmt: str = "NCHW",
                              intermediates_only: bool = False, aggregation: str = "sparse",
                              norm_alpha_scheme: str = "post-alpha"):
        """Outputs of selected blocks (spec §7), with the reference's arguments and results.

        indices: an int n selects the last n blocks; a sequence selects those block indices
        (negative counts from the end); None selects all. aggregation "sparse" returns each
        selected block's output, "dense" the mean of the block outputs since the previous selected
        index. Each intermediate is the patch-token map in ``output_fmt`` ("NCHW" (B, D, h, w) or
        "NLC" (B, h·w, D)), or, with return_prefix_tokens, a RadioOutput whose summary comes from
        that block's CLS tokens; intermediates are never feature-normalised (decision 7).

        Returns the list when ``intermediates_only``, else (final, list): ``final`` is a
        RadioOutput like ``model(x, feature_fmt=output_fmt)`` (feature normaliser applied), the
        output of the last block, or with ``stop_early=True`` of the last *selected* block (the
        blocks after it are not run, as in the reference). ``norm`` is the identity (no C-RADIO
        model has a final norm); ``norm_alpha_scheme`` ("post-alpha", "pre-alpha", "none") is for
        the inter-feature normaliser, which fastradio refuses at load, so it changes nothing.
        """
        if output_fmt not in ("NCHW", "NLC"):
            raise ValueError(f"output_fmt: expected 'NCHW' or 'NLC', got {output_fmt!r}")
        if aggregation not in ("sparse", "dense"):
            raise ValueError(f"aggregation: expected 'sparse' or 'dense', got {aggregation!r}")
        if norm_alpha_scheme not in ("post-alpha", "pre-alpha", "none"):
            raise ValueError(f"norm_alpha_scheme: expected 'post-alpha', 'pre-alpha' or 'none', got {norm_alpha_scheme!r}")
        if self.inter_feature_normalizer is not None:  # never set: such checkpoints are refused at load
            raise NotImplementedError("forward_intermediates with an inter-feature normaliser is not implemented")
        depth = self.config.depth
        if indices is None:
            idx = list(range(depth))
        elif isinstance(indices, int):
            if not 1 <= indices <= depth:
                raise ValueError(f"indices: an int selects the last n blocks, expected 1..{depth}, got {indices}")
            idx = list(range(depth - indices, depth))
        else:
            idx = []
            for i in indices:
                j = i + depth if i < 0 else i
                if not 0 <= j < depth:
                    raise ValueError(f"indices: expected block indices in [-{depth}, {depth}), got {i}")
                idx.append(j)
            idx = sorted(set(idx))
            if not idx:
                raise ValueError("indices: expected at least one block index, got an empty sequence")
        # The reference forgets to validate the resolution here; we do not.
        check_image_batch(x, self.min_resolution_step, self.device)
        self._maybe_check_range(x, "input")
        b, _, hh, ww = x.shape
        h, w = hh // self.patch_size, ww // self.patch_size
        tokens = self._embed(x)
        t = tokens.shape[1]
        cu_seqlens = torch.arange(0, (b + 1) * t, t, dtype=torch.int32, device=x.device)
        keep = set(range(idx[-1] + 1)) if aggregation == "dense" else set(idx)
        last = idx[-1] if stop_early else depth - 1
        keep.add(last)  # without stop_early every block runs, as in the reference (hooks on them fire)
        d = self.embed_dim
        outs = self._run(tokens.reshape(b * t, d), [(h, w)] * b, cu_seqlens, t, keep)
        block_outs = {i: o.view(b, t, d) for i, o in outs.items()}
        inter = []
        prev = -1
        for j in idx:
            y = block_outs[j]
            if aggregation == "dense":
                y = torch.stack([block_outs[i] for i in range(prev + 1, j + 1)]).float().mean(0).to(y.dtype)
            prev = j
            out = self._outputs(y, h, w, output_fmt, final=False)
            inter.append(out if return_prefix_tokens else out.features)
        if intermediates_only:
            return inter
        return self._outputs(block_outs[last], h, w, output_fmt), inter


def _tracing(x: torch.Tensor) -> bool:
    if torch.compiler.is_compiling():
        return True
    return x.is_cuda and torch.cuda.is_current_stream_capturing()
