"""An independent, deliberately different implementation of C-RADIO inference (v2, v3, v4) for
tests.

Written from spec/c-radiov2.md and spec/radio-family.md alone and sharing no code with
``fastradio``: it reads the raw checkpoint dict (keys with the ``radio_model.`` prefix) and
computes like the upstream timm-style model does — a 16x16 stride-16 convolution for the patch
embedding, ``F.interpolate`` on a (1, D, G, G) image for the position table (align_corners as the
caller says: True for C-RADIOv2, False for C-RADIOv4), batched SDPA attention — with the family's
facts read from the tensors themselves: the prefix count is the rows of ``cls_token.token``, the
summary the rows ``summary_idxs``, the MLP width whatever ``fc1`` has, layer-scale applied when
``ls1.grandma`` is present (x + γ·branch), ``reg_token`` ignored. Agreement with fastradio pins
the spec facts twice, from two directions.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

P = "radio_model."


def _pos(sd: dict, h: int, w: int, align_corners: bool) -> torch.Tensor:
    pe = sd[P + "model.patch_generator.pos_embed"].float()            # (1, G*G, D)
    g = math.isqrt(pe.shape[1])
    img = pe.reshape(1, g, g, -1).permute(0, 3, 1, 2)                  # (1, D, G, G)
    if (h, w) != (g, g):
        m = max(h, w)
        img = F.interpolate(img, size=(m, m), mode="bilinear", align_corners=align_corners)
        img = img[:, :, :h, :w]
    return img.flatten(2).transpose(1, 2)                              # (1, h*w, D)


def forward(sd: dict, x: torch.Tensor, *, num_heads: int, eps: float = 1e-6, scaled_ln: bool = False,
            dtype: torch.dtype = torch.float32, align_corners: bool = True,
            layer_scale: bool | None = None, window_size: int | None = None,
            num_global: int = 4, intermediates: list | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """x (B, 3, H, W) in [0, 1] → (summary (B, k·D), features (B, h*w, D)), both fp32 math
    unless ``dtype`` says otherwise. ``layer_scale``: None applies it when the checkpoint has
    ``ls1.grandma`` (the spec's rule); False ignores it (for tests that must see a difference).
    ``window_size``: ViTDet windows (spec §7) with ``num_global`` global blocks, done literally: the
    patch grid is cut into (B·windows, ws², D) batches for the windowed blocks, prefix tokens
    split off around them. ``intermediates``: a list that receives every block's output (B, T, D)
    in the original token order."""
    mean = sd[P + "input_conditioner.norm_mean"].float()
    std = sd[P + "input_conditioner.norm_std"].float()
    x = ((x.float() - mean) / std).to(dtype)
    w_emb = sd[P + "model.patch_generator.embedder.weight"].to(dtype)
    d = w_emb.shape[0]
    conv_w = w_emb.reshape(d, 3, 16, 16)
    t = F.conv2d(x, conv_w, stride=16)                                 # (B, D, h, w)
    b, _, h, w = t.shape
    t = t.flatten(2).transpose(1, 2) + _pos(sd, h, w, align_corners).to(dtype)
    cls = sd[P + "model.patch_generator.cls_token.token"].to(dtype)
    t = torch.cat([cls.expand(b, -1, -1), t], dim=1)
    depth = 1 + max(int(k.split(".")[3]) for k in sd if k.startswith(P + "model.blocks."))
    if layer_scale is None:
        layer_scale = f"{P}model.blocks.0.ls1.grandma" in sd
    npre = cls.shape[0]
    if window_size is not None:
        ws = window_size
        # window-major: (B, h/ws, ws, w/ws, ws, D) → (B, h/ws, w/ws, ws, ws, D)
        pt = t[:, npre:].reshape(b, h // ws, ws, w // ws, ws, d).permute(0, 1, 3, 2, 4, 5).reshape(b, h * w, d)
        t = torch.cat([t[:, :npre], pt], dim=1)
        per = max(depth // num_global, 1)
    for i in range(depth):
        if window_size is not None and i < depth - 1 and i % per != per - 1:
            pre, pt = t[:, :npre], t[:, npre:]
            pt = _block(sd, i, pt.reshape(b * (h // ws) * (w // ws), ws * ws, d), num_heads, eps, scaled_ln,
                        dtype, layer_scale)
            t = torch.cat([pre, pt.reshape(b, h * w, d)], dim=1)
        else:
            t = _block(sd, i, t, num_heads, eps, scaled_ln, dtype, layer_scale)
        if intermediates is not None:
            intermediates.append(_unwindow(t, npre, h, w, window_size))
    t = _unwindow(t, npre, h, w, window_size)
    idx = sd[P + "summary_idxs"].tolist()
    summary = torch.cat([t[:, j] for j in idx], dim=-1)
    feats = t[:, cls.shape[0]:]
    if P + "feature_normalizer.mean" in sd:
        feats = (feats - sd[P + "feature_normalizer.mean"].to(dtype)) @ sd[P + "feature_normalizer.tx"].to(dtype).T
    return summary, feats


def _unwindow(t: torch.Tensor, npre: int, h: int, w: int, ws: int | None) -> torch.Tensor:
    """Window-major patch tokens back to row-major (the identity without windows)."""
    if ws is None:
        return t
    b, _, d = t.shape
    pt = t[:, npre:].reshape(b, h // ws, w // ws, ws, ws, d).permute(0, 1, 3, 2, 4, 5).reshape(b, h * w, d)
    return torch.cat([t[:, :npre], pt], dim=1)


def _block(sd: dict, i: int, t: torch.Tensor, num_heads: int, eps: float, scaled_ln: bool, dtype: torch.dtype,
           layer_scale: bool) -> torch.Tensor:
    """Block i on a (B, T, D) batch."""
    d = t.shape[-1]
    hd = d // num_heads

    def g(name):
        return sd[f"{P}model.blocks.{i}.{name}"].to(dtype)

    def gamma(name):
        return g(name + ".grandma") if layer_scale else 1.0
    s = 1.0 / math.sqrt(i + 1) if scaled_ln else 1.0
    a = F.layer_norm(t, (d,), g("norm1.weight"), g("norm1.bias"), eps) * s
    qkv = F.linear(a, g("attn.qkv.weight"), g("attn.qkv.bias"))
    q, k, v = qkv.split(d, dim=-1)
    q, k, v = (z.unflatten(-1, (num_heads, hd)).transpose(1, 2) for z in (q, k, v))
    o = F.scaled_dot_product_attention(q, k, v)
    t = t + gamma("ls1") * F.linear(o.transpose(1, 2).flatten(2), g("attn.proj.weight"), g("attn.proj.bias"))
    a = F.layer_norm(t, (d,), g("norm2.weight"), g("norm2.bias"), eps) * s
    hid = F.gelu(F.linear(a, g("mlp.fc1.weight"), g("mlp.fc1.bias")))
    t = t + gamma("ls2") * F.linear(hid, g("mlp.fc2.weight"), g("mlp.fc2.bias"))
    return t
