"""Code written for the reference C-RADIO model (Hugging Face ``AutoModel`` with
``trust_remote_code``), run on fastradio with only the import and load lines changed.

    python tests/examples/from_reference.py                        # synthetic:test-d192: random weights, tiny
    python tests/examples/from_reference.py C-RADIOv2-B            # the real model (Hub or HF cache)
    python tests/examples/from_reference.py synthetic:C-RADIOv2-B  # the real architecture, random weights

The two changed lines carry a ``# reference:`` comment with what they replace; everything else is
the reference's API as its users write it. ``tests/test_compat.py`` runs this file and checks its
numbers against an independent implementation.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

import fastradio  # reference: from transformers import AutoModel

DEFAULT_MODEL = "synthetic:test-d192@0"


def main(name: str = DEFAULT_MODEL) -> dict:
    # reference: model = AutoModel.from_pretrained("nvidia/C-RADIOv2-B", trust_remote_code=True, torch_dtype=torch.float32)
    model = fastradio.RadioModel.from_pretrained(name, trust_remote_code=True, torch_dtype=torch.float32)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.eval().to(device)

    # Introspection the way reference code does it.
    h, w = model.get_nearest_supported_resolution(*model.preferred_resolution)
    assert model.preferred_resolution == model.config.to_dict()["preferred_resolution"]  # a list in config.json
    patch_size = model.model.patch_generator.patch_size
    num_skip = model.model.patch_generator.num_skip               # prefix tokens before the patches
    embed_dim = model.model.embed_dim
    teachers = [t["name"] for t in model.config.args["teachers"]]
    model.switch_to_deploy()

    x = torch.rand(2, 3, min(h, 64), min(w, 96), device=device)   # RGB in [0, 1]
    with torch.no_grad():
        summary, features = model(x)

        # A forward hook on a block: the block's (B, T, D) tokens, prefix tokens first.
        captured = {}
        handle = model.model.blocks[1].register_forward_hook(lambda m, inp, out: captured.update(block1=out))
        model(x)
        handle.remove()
        block1_patches = captured["block1"][:, num_skip:]

        # Intermediate features through the Hugging Face wrapper's attribute.
        final, inter = model.radio_model.forward_intermediates(
            x, indices=[1, -1], return_prefix_tokens=True, output_fmt="NLC", norm_alpha_scheme="post-alpha")
        spatial = model.radio_model.forward_intermediates(x, indices=[1], intermediates_only=True)  # NCHW

        # Weights round-trip with the Hub's names.
        hub_sd = {"radio_model." + k: v for k, v in model.state_dict().items()}
        model.load_state_dict(hub_sd)

        compiled = torch.compile(model, fullgraph=True)
        summary_compiled, features_compiled = compiled(x)

    out = model(x).to(torch.float32)
    features_np = out.features.cpu().numpy()
    return {
        "name": name, "x": x, "summary": summary, "features": features, "block1_patches": block1_patches,
        "final": final, "inter": inter, "spatial": spatial, "summary_compiled": summary_compiled,
        "features_compiled": features_compiled, "features_np": features_np, "patch_size": patch_size,
        "num_skip": num_skip, "embed_dim": embed_dim, "teachers": teachers, "model": model,
    }


if __name__ == "__main__":
    r = main(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_MODEL)
    gap = (r["summary_compiled"] - r["summary"]).abs().max().item()
    print(f"{r['name']}: summary {tuple(r['summary'].shape)}, features {tuple(r['features'].shape)}, "
          f"patch {r['patch_size']}, prefix tokens {r['num_skip']}, width {r['embed_dim']}, teachers {r['teachers']}")
    print(f"block 1 patch tokens (hook) {tuple(r['block1_patches'].shape)}, intermediates "
          f"{[tuple(t.features.shape) for t in r['inter']]}, NCHW {tuple(r['spatial'][0].shape)}")
    print(f"torch.compile(fullgraph=True): max |summary - eager| = {gap:.2e}; features as numpy "
          f"{r['features_np'].shape} {r['features_np'].dtype}")
    assert isinstance(r["features_np"], np.ndarray)
