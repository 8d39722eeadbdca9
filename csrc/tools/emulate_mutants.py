"""Mutants for the emulated device's mutation check (``python csrc/tools/emulate.py --mutants ...``).

Each mutant makes one edit to a copy of csrc/ (the text `find`, which must occur exactly once in
`file`, becomes `replace`) and names the driver cases that must catch it (all cases of `op` and
`tier`, run in the plain and the ThreadSanitizer build). A mutant
that deletes a barrier or a cp.async wait the kernel needs, shifts a wait count, or moves a tile
bound must be caught: a case fails its values, differs between schedules, or a sanitizer or the
emulator reports it. A control (`expect="passes"`) edits something that is really redundant and
must still pass, which shows the check does not fail everything.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mutant:
    name: str
    file: str
    find: str
    replace: str
    op: str
    tier: str | None
    expect: str = "caught"  # or "passes"
    why: str = ""
    arch: int = 80  # the emulated arch whose build runs it (90: the sm_90a tiers)


def _drop(name, file, line, op, tier, why, expect="caught", arch=80):
    """A mutant that deletes `line` (with its newline)."""
    return Mutant(name, file, line + "\n", "", op, tier, expect, why, arch)


MUTANTS: list[Mutant] = [
    # --- linear, mma_sm80 (cp.async pipeline, staged epilogue) ---------------------------------------
    _drop("linear_sm80.wait", "linear/linear_sm80.cu", "    ptx::cp_async_wait<C::kStages - 2>();",
          "linear", "mma_sm80", "the stage is read before its copies land"),
    _drop("linear_sm80.barrier", "linear/linear_sm80.cu",
          "    __syncthreads();  // step s visible to every warp; every warp is done with step s - 1's stage",
          "linear", "mma_sm80", "other threads' copies not visible; a stage refilled while read"),
    Mutant("linear_sm80.wait_count", "linear/linear_sm80.cu", "ptx::cp_async_wait<C::kStages - 2>();",
           "ptx::cp_async_wait<C::kStages - 1>();", "linear", "mma_sm80", why="waits for one group too few"),
    Mutant("linear_sm80.last_step_bound", "linear/linear_sm80.cu", "    if (next < steps) load_stage(",
           "    if (next + 1 < steps) load_stage(", "linear", "mma_sm80", why="the last k-step is never loaded"),
    _drop("linear_sm80.final_wait", "linear/linear_sm80.cu",
          "  ptx::cp_async_wait<0>();  // only empty groups remain: the stages may be reused",
          "linear", "mma_sm80", "only empty groups are in flight there", expect="passes"),
    _drop("linear_mma.epilogue_barrier_before", "linear/linear_mma.cuh",
          "  __syncthreads();  // every warp is done with the pipeline's stages",
          "linear", "mma_sm80", "accumulators overwrite a stage other warps still read"),
    Mutant("linear_mma.epilogue_barrier_after", "linear/linear_mma.cuh",
           "            make_float2(acc[mi][ni][2 * h], acc[mi][ni][2 * h + 1]);\n      }\n  __syncthreads();\n",
           "            make_float2(acc[mi][ni][2 * h], acc[mi][ni][2 * h + 1]);\n      }\n",
           "linear", "mma_sm80", why="rows read before other warps wrote them"),
    # --- linear, wgmma_sm90a (TMA + mbarrier pipeline, wgmma, TMA-stored epilogue; sm_90 build) -----------
    _drop("linear_sm90a.full_wait", "linear/linear_sm90a.cu",
          "      ptx::mbarrier_wait(&full[stage], uint32_t(it / kStages) & 1u);  // the stage's TMA bytes landed",
          "linear", "wgmma_sm90a", "wgmma reads a stage before its TMA bytes land", arch=90),
    _drop("linear_sm90a.empty_wait", "linear/linear_sm90a.cu",
          "          ptx::mbarrier_wait(&empty[stage], phase ^ 1u);",
          "linear", "wgmma_sm90a", "the producer refills a stage the consumers have not released", arch=90),
    _drop("linear_sm90a.proxy_fence", "linear/linear_sm90a.cu",
          "      ptx::fence_proxy_async();  // the staging tile's st.shared -> the TMA store (async proxy)",
          "linear", "wgmma_sm90a", "the TMA store reads the staging tile without the generic-proxy stores", arch=90),
    Mutant("linear_sm90a.final_wait_group", "linear/linear_sm90a.cu", "    ptx::wgmma_wait_group<0>();\n",
           "    ptx::wgmma_wait_group<1>();\n", "linear", "wgmma_sm90a",
           why="off by one: the epilogue reads the last k-step's accumulators before they retire", arch=90),
    Mutant("linear_sm90a.loop_wait_group", "linear/linear_sm90a.cu", "      ptx::wgmma_wait_group<1>();\n",
           "      ptx::wgmma_wait_group<2>();\n", "linear", "wgmma_sm90a",
           why="off by one: a stage is released (and refilled by TMA) while a wgmma in flight still reads it", arch=90),
    # --- attention, wgmma_sm90a (TMA + mbarrier K/V pipeline, wgmma SS / RS with MN-major V; sm_90 build) ---
    _drop("attention_sm90a.kv_full_wait", "attention/attention_sm90a.cu",
          "    ptx::mbarrier_wait(&full[j % kStages], uint32_t(j / kStages) & 1u);",
          "attention", "wgmma_sm90a", "wgmma reads K / V before their TMA bytes land", arch=90),
    _drop("attention_sm90a.kv_empty_wait", "attention/attention_sm90a.cu",
          "        ptx::mbarrier_wait(&empty[s], (uint32_t(j / kStages) & 1u) ^ 1u);",
          "attention", "wgmma_sm90a", "the producer refills a stage the consumers have not released", arch=90),
    _drop("attention_sm90a.q_wait", "attention/attention_sm90a.cu", "  ptx::mbarrier_wait(&q_full[0], 0);",
          "attention", "wgmma_sm90a", "Q·Kᵀ reads Q before it lands", arch=90),
    _drop("attention_sm90a.release", "attention/attention_sm90a.cu",
          "    if (t == 0) ptx::mbarrier_arrive(&empty[sp]);  // this warpgroup's reads of the stage retired",
          "attention", "wgmma_sm90a", "a stage is never released: the producer waits forever", arch=90),
    _drop("attention_sm90a.pv_fence", "attention/attention_sm90a.cu",
          "    ptx::wgmma_fence();  // sc, o, ot and pa were written by the threads",
          "attention", "wgmma_sm90a", "the loop's wgmmas without wgmma.fence after the threads wrote their registers",
          arch=90),
    Mutant("attention_sm90a.k_swizzle", "attention/attention_sm90a.cu",
           "ptx::smem_desc(kt + 32 * ks, 16, 1024, 128)", "ptx::smem_desc(kt + 32 * ks, 16, 1024, 64)",
           "attention", "wgmma_sm90a", why="K's descriptor claims a 64-byte swizzle; TMA wrote 128", arch=90),
    Mutant("attention_sm90a.v_swizzle", "attention/attention_sm90a.cu",
           "ptx::smem_desc(vt + kk * 16 * 128, P::kMainBytes, 1024, 128)",
           "ptx::smem_desc(vt + kk * 16 * 128, P::kMainBytes, 1024, 64)",
           "attention", "wgmma_sm90a", why="V's (MN-major) descriptor claims a 64-byte swizzle; TMA wrote 128", arch=90),
    Mutant("attention_sm90a.s_wait_group", "attention/attention_sm90a.cu",
           "    ptx::wgmma_wait_group<1>();  // S_j retired", "    ptx::wgmma_wait_group<2>();  // S_j retired",
           "attention", "wgmma_sm90a", why="off by one: the softmax reads S_j before its wgmmas retire", arch=90),
    Mutant("attention_sm90a.pv_wait_group", "attention/attention_sm90a.cu",
           "    ptx::wgmma_wait_group<0>();  // P·V_{j-1} retired", "    ptx::wgmma_wait_group<1>();  // P·V_{j-1} retired",
           "attention", "wgmma_sm90a", why="off by one: O rescaled and the stage released before P·V retires", arch=90),
    Mutant("attention_sm90a.rescale_in_flight", "attention/attention_sm90a.cu",
           "    softmax(j, alpha);\n",
           "    softmax(j, alpha);\n#pragma unroll\n    for (int e = 0; e < 32; ++e) o[e] *= alpha[e / 2 % 2];\n",
           "attention", "wgmma_sm90a",
           why="O rescaled while P·V, which accumulates into it, is in flight (ptxas accepts it silently)", arch=90),
    Mutant("attention_sm90a.no_tail_mask", "attention/attention_sm90a.cu",
           "    if (left < kBlockN) {  // the image's last, partial tile",
           "    if (false) {  // the image's last, partial tile",
           "attention", "wgmma_sm90a", why="keys past the image (the next image's, or TMA's zeros) get weight",
           arch=90),
    Mutant("attention_sm90a.tail_mask_off_by_one", "attention/attention_sm90a.cu",
           "if (8 * (e / 4) + 2 * q + e % 2 >= int(left))", "if (8 * (e / 4) + 2 * q + e % 2 >= int(left) + 1)",
           "attention", "wgmma_sm90a", why="one key past the image gets weight", arch=90),
    _drop("attention_sm90a.v_clean_wait", "attention/attention_sm90a.cu",
          "  if (last_keys < kBlockN) ptx::mbarrier_wait(&v_clean[0], 0);  // V past the image zeroed",
          "attention", "wgmma_sm90a", "P·V reads the next image's V rows before they are zeroed (a NaN token leaks)",
          arch=90),
    Mutant("attention_sm90a.early_release", "attention/attention_sm90a.cu",
           "    pass_turn(int(j));\n"
           "    ptx::wgmma_wait_group<1>();  // S_j retired; P·V_{j-1} may still run\n"
           "    softmax(j, alpha);\n"
           "    ptx::wgmma_wait_group<0>();  // P·V_{j-1} retired: its stage and pa are free, O is final in scale m_{j-1}\n"
           "    if (t == 0) ptx::mbarrier_arrive(&empty[sp]);  // this warpgroup's reads of the stage retired\n",
           "    pass_turn(int(j));\n"
           "    if (t == 0) ptx::mbarrier_arrive(&empty[sp]);  // this warpgroup's reads of the stage retired\n"
           "    ptx::wgmma_wait_group<1>();  // S_j retired; P·V_{j-1} may still run\n"
           "    softmax(j, alpha);\n"
           "    ptx::wgmma_wait_group<0>();  // P·V_{j-1} retired: its stage and pa are free, O is final in scale m_{j-1}\n",
           "attention", "wgmma_sm90a",
           why="the stage of P·V_{j-1} is released right after the issue, before P·V retires: the producer's TMA may "
               "refill V under it",
           arch=90),
    Mutant("attention_sm90a.release_before_own_wait", "attention/attention_sm90a.cu",
           "    ptx::wgmma_wait_group<0>();  // P·V_{j-1} retired: its stage and pa are free, O is final in scale m_{j-1}\n"
           "    if (t == 0) ptx::mbarrier_arrive(&empty[sp]);  // this warpgroup's reads of the stage retired\n",
           "    if (t == 0) ptx::mbarrier_arrive(&empty[sp]);  // this warpgroup's reads of the stage retired\n"
           "    ptx::wgmma_wait_group<0>();  // P·V_{j-1} retired: its stage and pa are free, O is final in scale m_{j-1}\n",
           "attention", "wgmma_sm90a",
           why="the release moved just before the releasing thread's own wait_group: other lanes of its warp may "
               "have retired P·V (ending the operand hold), but thread 0 has not: caught through the phase's "
               "Released set when the producer refills the stage",
           arch=90),
    _drop("attention_sm90a.first_turn", "attention/attention_sm90a.cu",
          "  if constexpr (kPingPong)\n    if (cw == 1) ptx::named_barrier_arrive(kTurnBarrier, 2 * 128);",
          "attention", "wgmma_sm90a", "consumer 0 never gets the first turn: both consumers wait (deadlock)", arch=90),
    Mutant("attention_sm90a.turn_unbalanced", "attention/attention_sm90a.cu",
           "      if (cw == 0 || turn + 1 < turns) ptx::named_barrier_arrive",
           "      if (true) ptx::named_barrier_arrive", "attention", "wgmma_sm90a",
           why="consumer 1 passes a turn nobody takes: a named-barrier round is left open when the block ends",
           arch=90),
    Mutant("attention_sm90a.store_bound", "attention/attention_sm90a.cu", "    if (r < tile.len) {",
           "    if (r < tile.len - 1) {", "attention", "wgmma_sm90a",
           why="an image's last query row is never stored (the NaN-poisoned output shows it)", arch=90),
    # --- linear, mma_sm75 (register-staged double buffer) --------------------------------------------
    Mutant("linear_sm75.prologue_barrier", "linear/linear_sm75.cu", "  regs.store(smem);\n  __syncthreads();\n",
           "  regs.store(smem);\n", "linear", "mma_sm75", why="the first stage read before it is stored"),
    Mutant("linear_sm75.loop_barrier", "linear/linear_sm75.cu",
           "    if (more) regs.store(smem + (buf ^ 1) * C::kStageElems);  // last read before the previous barrier\n"
           "    __syncthreads();\n",
           "    if (more) regs.store(smem + (buf ^ 1) * C::kStageElems);  // last read before the previous barrier\n",
           "linear", "mma_sm75", why="the next stage read before it is stored, and overwritten while read"),
    # --- attention, mma_sm80 and mma_sm75 (attention_mma.cuh) ----------------------------------------
    _drop("attention_sm80.q_wait", "attention/attention_mma.cuh", "    ptx::cp_async_wait<1>();  // the Q group",
          "attention", "mma_sm80", "Q fragments loaded before Q lands"),
    Mutant("attention_mma.prologue_barrier", "attention/attention_mma.cuh",
           "  __syncthreads();\n  uint32_t qf[S::kKSteps][4];", "  uint32_t qf[S::kKSteps][4];",
           "attention", "mma_sm80", why="Q rows of other threads not visible"),
    _drop("attention_mma.q_war_barrier", "attention/attention_mma.cuh",
          "  __syncthreads();  // every warp has its Q before stage 1 takes K/V tile 1",
          "attention", "mma_sm80", "tile 1 overwrites Q while other warps still load it"),
    _drop("attention_sm80.loop_wait", "attention/attention_mma.cuh", "      ptx::cp_async_wait<1>();",
          "attention", "mma_sm80", "tile j read before it lands"),
    Mutant("attention_sm80.loop_wait_count", "attention/attention_mma.cuh",
           "      ptx::cp_async_wait<1>();\n      __syncthreads();",
           "      ptx::cp_async_wait<2>();\n      __syncthreads();", "attention", "mma_sm80",
           why="waits for one group too few"),
    _drop("attention_sm80.visible_barrier", "attention/attention_mma.cuh",
          "      __syncthreads();          // tile j, copied by every thread, is visible",
          "attention", "mma_sm80", "tile j's rows copied by other threads not visible"),
    _drop("attention_sm80.war_barrier", "attention/attention_mma.cuh",
          "      __syncthreads();          // every warp is done with `cur` before it takes tile j + 2",
          "attention", "mma_sm80", "tile j + 2 overwrites a stage other warps still read"),
    _drop("attention_sm75.loop_barrier", "attention/attention_mma.cuh",
          "      __syncthreads();  // tile j + 1 visible, and every warp is done with `cur`",
          "attention", "mma_sm75", "the next tile read before it is stored, and overwritten while read"),
    Mutant("attention_mma.last_tile_mask", "attention/attention_mma.cuh",
           "  if (keys_valid < S::kBlockN) mask_scores(s, lane, keys_valid);",
           "  if (keys_valid < S::kBlockN) mask_scores(s, lane, keys_valid + 1);",
           "attention", "mma_sm80", why="one key past the image gets weight"),
    # --- patch_embed, mma_sm80 and mma_sm75 (patch_embed_mma.cuh) --------------------------------------
    _drop("patch_embed_sm80.wait", "patch_embed/patch_embed_mma.cuh", "      ptx::cp_async_wait<kStages - 2>();",
          "patch_embed", "mma_sm80", "the stage is read before its copies land"),
    Mutant("patch_embed_sm80.barrier", "patch_embed/patch_embed_mma.cuh",
           "      ptx::cp_async_wait<kStages - 2>();\n      __syncthreads();\n",
           "      ptx::cp_async_wait<kStages - 2>();\n", "patch_embed", "mma_sm80",
           why="other threads' copies not visible; a stage refilled while read"),
    Mutant("patch_embed_sm80.wait_count", "patch_embed/patch_embed_mma.cuh",
           "ptx::cp_async_wait<kStages - 2>();", "ptx::cp_async_wait<kStages - 1>();", "patch_embed", "mma_sm80",
           why="waits for one group too few"),
    Mutant("patch_embed_sm80.last_step_bound", "patch_embed/patch_embed_mma.cuh",
           "      if (ks + kStages - 1 < kKSteps) load_step(", "      if (ks + kStages < kKSteps) load_step(",
           "patch_embed", "mma_sm80", why="the last k-step is never loaded"),
    _drop("patch_embed_sm80.final_wait", "patch_embed/patch_embed_mma.cuh",
          "  if constexpr (Cfg::kAsync) ptx::cp_async_wait<0>();", "patch_embed", "mma_sm80",
          "only empty groups are in flight there", expect="passes"),
    Mutant("patch_embed_mma.epilogue_barrier_before", "patch_embed/patch_embed_mma.cuh",
           "  if constexpr (Cfg::kAsync) ptx::cp_async_wait<0>();\n  __syncthreads();\n",
           "  if constexpr (Cfg::kAsync) ptx::cp_async_wait<0>();\n", "patch_embed", "mma_sm80",
           why="staging overwrites a stage other warps still read"),
    Mutant("patch_embed_mma.staging_barrier", "patch_embed/patch_embed_mma.cuh",
           "                make_float2(acc[mi][ni][2 * h], acc[mi][ni][2 * h + 1]);\n          }\n    }\n"
           "    __syncthreads();\n",
           "                make_float2(acc[mi][ni][2 * h], acc[mi][ni][2 * h + 1]);\n          }\n    }\n",
           "patch_embed", "mma_sm75", why="staging rows read before other warps wrote them"),
    _drop("patch_embed_sm75.part_barrier", "patch_embed/patch_embed_mma.cuh",
          "    if (part + 1 < kBM / Cfg::kStagingRows) __syncthreads();  // staging is rewritten next part",
          "patch_embed", "mma_sm75", "the second half overwrites staging rows still being read"),
    Mutant("patch_embed_sm75.loop_barrier", "patch_embed/patch_embed_mma.cuh",
           "      __syncthreads();\n      if (ks + 1 < kKSteps) load_step(0, ks + 1);",
           "      if (ks + 1 < kKSteps) load_step(0, ks + 1);", "patch_embed", "mma_sm75",
           why="a stage read before it is stored, and overwritten while read"),
    # --- the CUDA-core tier (not tensor-core, but the same kind of barrier) --------------------------------
    Mutant("linear_cuda_core.loop_barrier", "linear/linear.cu",
           "      wl.store(ws[buf ^ 1]);\n    }\n    __syncthreads();\n", "      wl.store(ws[buf ^ 1]);\n    }\n",
           "linear", "cuda_core", why="the next tile read before it is stored"),
    _drop("attention_cuda_core.p_barrier", "attention/attention.cu",
          "    __syncthreads();  // every thread is done reading K before P takes its place",
          "attention", "cuda_core", "P overwrites K while other threads still read it"),
    _drop("add_layer_norm.group_sum_barrier", "add_layer_norm/add_layer_norm.cu", "    __syncthreads();",
          "add_layer_norm", "cuda_core", "a row's per-warp partial sums read before they are written"),
]

#: The mutants CI runs (the whole list is `--mutants all`): one per tensor-core pipeline kind, and a
#: control.
QUICK = ("linear_sm80.barrier", "attention_sm80.war_barrier", "patch_embed_sm75.loop_barrier",
         "linear_sm80.final_wait",
         # Hopper: a stage released while a wgmma in flight still reads it (held operands + the release
         # handing the CPU to the producer are what catch these)
         "linear_sm90a.loop_wait_group", "attention_sm90a.early_release")
