// pybind11 binding of attention (csrc/python/binding.h): argument checks, then the launcher.
#include "python/binding.h"

#include "attention/attention.h"
#include "attention/attention_host.h"

namespace py = pybind11;

namespace fastradio {
namespace {

AttentionParams attention_params(const char* fn, uint64_t qkv, uint64_t cu_seqlens, uint64_t out, int64_t rows,
                                 int64_t num_seqs, int64_t max_seqlen, int64_t num_heads, int64_t head_dim,
                                 int dtype) {
  check_pointer(fn, "qkv", qkv);
  check_pointer(fn, "cu_seqlens", cu_seqlens);
  check_pointer(fn, "out", out);
  check_positive(fn, "rows", rows);
  check_positive(fn, "num_seqs", num_seqs);
  check_positive(fn, "max_seqlen", max_seqlen);
  check_positive(fn, "num_heads", num_heads);
  if (num_heads > kAttentionMaxHeads)
    value_error(cat(fn, ": num_heads must be <= ", kAttentionMaxHeads, " (the grid's y size), got ", num_heads));
  if (!attention_head_dim_supported(head_dim))
    value_error(cat(fn, ": head_dim must be 64, 72 or 80 (the head dims the kernels are built for), got ", head_dim));
  check_product(fn, "qkv size rows*3*num_heads*head_dim", rows, 3 * num_heads, head_dim);
  if (rows / kAttentionMinBlockM + num_seqs + 1 > INT32_MAX)
    value_error(cat(fn, ": rows / ", kAttentionMinBlockM, " + num_seqs must be < 2^31 (query tiles of one head), got ",
                    rows / kAttentionMinBlockM + num_seqs));
  for (const auto& [name, ptr] : {std::pair<const char*, uint64_t>{"qkv", qkv}, {"out", out}})
    if (ptr % 16 != 0)
      value_error(cat(fn, ": ", name, " must be 16-byte aligned (the kernels use 16-byte accesses), got 0x", std::hex,
                      ptr));
  AttentionParams p;
  p.qkv = reinterpret_cast<const void*>(qkv);
  p.cu_seqlens = reinterpret_cast<const int32_t*>(cu_seqlens);
  p.out = reinterpret_cast<void*>(out);
  p.rows = rows;
  p.num_seqs = num_seqs;
  p.max_seqlen = max_seqlen;
  p.num_heads = num_heads;
  p.head_dim = head_dim;
  p.dtype = check_dtype(fn, "dtype", dtype);
  return p;
}

// The dtypes a tier's kernels are instantiated for (the binding cannot know the caller's intent).
void check_tier_dtype(const char* fn, Tier tier, DType dtype) {
  if (!attention_tier_takes(tier, dtype))
    value_error(cat(fn, ": tier ", int(tier), " (", tier_name(tier), ") takes ",
                    tier == Tier::kMmaSm75 ? "float16" : "float16 or bfloat16", ", got dtype ", int(dtype), " (",
                    dtype_name(dtype), ")"));
}

void attention_fwd_py(uint64_t qkv, uint64_t cu_seqlens, uint64_t out, int64_t rows, int64_t num_seqs,
                      int64_t max_seqlen, int64_t num_heads, int64_t head_dim, int dtype, int tier, uint64_t stream) {
  const char* fn = "attention_fwd";
  AttentionParams p =
      attention_params(fn, qkv, cu_seqlens, out, rows, num_seqs, max_seqlen, num_heads, head_dim, dtype);
  p.tier = check_tier(fn, "attention", tier);
  check_tier_dtype(fn, p.tier, p.dtype);
  const int dev = require_device(fn, "attention", p.tier);
  check_device_pointer(fn, "qkv", qkv, dev);
  check_device_pointer(fn, "cu_seqlens", cu_seqlens, dev);
  check_device_pointer(fn, "out", out, dev);
  raise_status(fn, attention_fwd(p, reinterpret_cast<cudaStream_t>(stream)));
}

// The kernels' arithmetic (and, for the tensor-core tiers, a warp emulation of their fragments)
// on host memory: lets GPU-less CI check it against a float64 oracle. Not a backend: slow,
// single-threaded, for tests only. Any tier with a host twin, compiled or not.
void attention_host_py(uint64_t qkv, uint64_t cu_seqlens, uint64_t out, int64_t rows, int64_t num_seqs,
                       int64_t max_seqlen, int64_t num_heads, int64_t head_dim, int dtype, int tier, int warps) {
  const char* fn = "_attention_host";
  AttentionParams p =
      attention_params(fn, qkv, cu_seqlens, out, rows, num_seqs, max_seqlen, num_heads, head_dim, dtype);
  if (tier != int(Tier::kCudaCore) && tier != int(Tier::kMmaSm75) && tier != int(Tier::kMmaSm80))
    value_error(cat(fn, ": tier must be 0 (cuda_core), 1 (mma_sm75) or 2 (mma_sm80), got ", tier));
  p.tier = Tier(tier);
  check_tier_dtype(fn, p.tier, p.dtype);
  if (warps != 4 && warps != 8) value_error(cat(fn, ": warps must be 4 or 8, got ", warps));
  raise_status(fn, attention_host(p, warps));
}

}  // namespace
}  // namespace fastradio

FASTRADIO_BIND_OP(attention) {
  using namespace fastradio;
  m.def("attention_fwd", &attention_fwd_py, py::arg("qkv"), py::arg("cu_seqlens"), py::arg("out"), py::arg("rows"),
        py::arg("num_seqs"), py::arg("max_seqlen"), py::arg("num_heads"), py::arg("head_dim"), py::arg("dtype"),
        py::arg("tier"), py::arg("stream"),
        "Enqueue attention on `stream` (a cudaStream_t as int) of the current device.\n"
        "qkv: device pointer to (rows, 3*num_heads*head_dim), out: to (rows, num_heads*head_dim), both of dtype\n"
        "code `dtype`, contiguous, 16-byte aligned; cu_seqlens: to (num_seqs+1,) int32, image s = rows\n"
        "[cu[s], cu[s+1]) (values not checked here: bounds are clamped to [0, rows]). Non-causal softmax\n"
        "attention within each image, scale head_dim^-0.5, head_dim 64, 72 or 80; max_seqlen >= every length.\n"
        "Raises ValueError for bad arguments, RuntimeError without a driver/device, for a device this build\n"
        "has no kernel for, or on a CUDA error.");
  m.def("_attention_host", &attention_host_py, py::arg("qkv"), py::arg("cu_seqlens"), py::arg("out"), py::arg("rows"),
        py::arg("num_seqs"), py::arg("max_seqlen"), py::arg("num_heads"), py::arg("head_dim"), py::arg("dtype"),
        py::arg("tier"), py::arg("warps") = 4,
        "Test aid: a tier's attention kernel run on HOST pointers (same arguments, no stream); the tensor-core\n"
        "tiers as a warp emulation with `warps` (4 or 8) warps per block.");
}
