// pybind11 binding of patch_embed (csrc/python/binding.h): argument checks, then the launcher.
#include "python/binding.h"

#include <utility>

#include "patch_embed/patch_embed.h"
#include "patch_embed/patch_embed_host.h"

namespace py = pybind11;

namespace fastradio {
namespace {

PatchEmbedParams patch_embed_params(const char* fn, uint64_t x, uint64_t weight, uint64_t pos, uint64_t prefix,
                                    uint64_t out, int64_t batch, int64_t height, int64_t width, int64_t dim,
                                    int64_t prefix_len, int dtype) {
  check_pointer(fn, "x", x);
  check_pointer(fn, "weight", weight);
  check_pointer(fn, "pos", pos);
  check_pointer(fn, "out", out);
  check_positive(fn, "batch", batch);
  check_positive(fn, "dim", dim);
  for (const auto& [name, v] : {std::pair<const char*, int64_t>{"height", height}, {"width", width}})
    if (v < kPatch || v % kPatch)
      value_error(cat(fn, ": ", name, " must be a positive multiple of ", kPatch, " pixels, got ", v));
  if (prefix_len < 0) value_error(cat(fn, ": prefix_len must be >= 0, got ", prefix_len));
  if (prefix_len == 0 && prefix != 0)
    value_error(cat(fn, ": prefix must be 0 when prefix_len is 0 (no prefix rows), got 0x", std::hex, prefix));
  if (prefix_len > 0 && prefix == 0)
    value_error(cat(fn, ": prefix must be a non-null device pointer when prefix_len = ", prefix_len, ", got 0"));
  // Every element offset the kernels form must fit int64 with room to spare (patch_embed_check
  // allows up to 2^60 elements per tensor).
  constexpr int64_t kMax = int64_t(1) << 60;
  auto check_size = [&](const char* what, int64_t a, int64_t b, int64_t c) {
    check_product(fn, what, a, b, c);
    if (a * b * c > kMax) value_error(cat(fn, ": ", what, " = ", a, " * ", b, " * ", c, " elements is over 2^60"));
  };
  check_size("image size batch*3*height", batch, kPatchChannels, height);
  check_size("image size batch*3*height*width", batch * kPatchChannels, height, width);
  check_size("weight size dim*768", dim, kPatchK, 1);
  const int64_t hw = (height / kPatch) * (width / kPatch);
  check_size("pos size h*w*dim", hw, dim, 1);
  check_size("prefix size prefix_len*dim", prefix_len, dim, 1);
  check_size("output size batch*(prefix_len + h*w)*dim", batch, prefix_len + hw, dim);
  PatchEmbedParams p;
  p.x = reinterpret_cast<const void*>(x);
  p.weight = reinterpret_cast<const void*>(weight);
  p.pos = reinterpret_cast<const void*>(pos);
  p.prefix = reinterpret_cast<const void*>(prefix);
  p.out = reinterpret_cast<void*>(out);
  p.batch = batch;
  p.height = height;
  p.width = width;
  p.dim = dim;
  p.prefix_len = prefix_len;
  p.dtype = check_dtype(fn, "dtype", dtype);
  return p;
}

void patch_embed_fwd_py(uint64_t x, uint64_t weight, uint64_t pos, uint64_t prefix, uint64_t out, int64_t batch,
                        int64_t height, int64_t width, int64_t dim, int64_t prefix_len, int dtype, int tier,
                        uint64_t stream) {
  const char* fn = "patch_embed_fwd";
  PatchEmbedParams p =
      patch_embed_params(fn, x, weight, pos, prefix, out, batch, height, width, dim, prefix_len, dtype);
  p.tier = check_tier(fn, "patch_embed", tier);
  if (!patch_embed_tier_takes(p.tier, p.dtype)) {
    std::vector<std::string> takes;
    for (int i = 0; i < kNumDTypes; ++i)
      if (patch_embed_tier_takes(p.tier, DType(i))) takes.push_back(dtype_name(DType(i)));
    value_error(cat(fn, ": tier ", tier, " (", tier_name(p.tier), ") takes ", join(takes, ", "), ", got ",
                    dtype_name(p.dtype), " (float32 runs on cuda_core)"));
  }
  const int dev = require_device(fn, "patch_embed", p.tier);
  check_device_pointer(fn, "x", x, dev);
  check_device_pointer(fn, "weight", weight, dev);
  check_device_pointer(fn, "pos", pos, dev);
  if (prefix != 0) check_device_pointer(fn, "prefix", prefix, dev);
  check_device_pointer(fn, "out", out, dev);
  raise_status(fn, patch_embed_fwd(p, reinterpret_cast<cudaStream_t>(stream)));
}

// The kernels' indexing and epilogue run on host memory: lets GPU-less CI check the im2patch
// addressing, the token placement and the prefix ownership against torch. Not a backend: slow,
// single-threaded, for tests only.
void patch_embed_host_py(uint64_t x, uint64_t weight, uint64_t pos, uint64_t prefix, uint64_t out, int64_t batch,
                         int64_t height, int64_t width, int64_t dim, int64_t prefix_len, int dtype, int64_t tile_m) {
  const char* fn = "_patch_embed_host";
  const PatchEmbedParams p =
      patch_embed_params(fn, x, weight, pos, prefix, out, batch, height, width, dim, prefix_len, dtype);
  check_positive(fn, "tile_m", tile_m);
  raise_status(fn, patch_embed_host(p, tile_m));
}

}  // namespace
}  // namespace fastradio

FASTRADIO_BIND_OP(patch_embed) {
  using namespace fastradio;
  m.def("patch_embed_fwd", &patch_embed_fwd_py, py::arg("x"), py::arg("weight"), py::arg("pos"), py::arg("prefix"),
        py::arg("out"), py::arg("batch"), py::arg("height"), py::arg("width"), py::arg("dim"), py::arg("prefix_len"),
        py::arg("dtype"), py::arg("tier"), py::arg("stream"),
        "Enqueue patch_embed on `stream` (a cudaStream_t as int) of the current device.\n"
        "Device pointers, all contiguous and of dtype code `dtype`: x (batch, 3, height, width) with height and\n"
        "width multiples of 16; weight (dim, 768), feature ch*256 + dy*16 + dx; pos (h*w, dim); prefix\n"
        "(prefix_len, dim), 0 iff prefix_len == 0; out (batch, prefix_len + h*w, dim). Writes\n"
        "out[b, P + r*w + c] = patch(b, r, c) . weight^T + pos[r*w + c] (fp32 accumulation, one rounding) and\n"
        "out[b, j] = prefix[j]. Tiers: cuda_core (all dtypes), mma_sm80 (float16, bfloat16). Raises ValueError\n"
        "for bad arguments, RuntimeError without a driver/device, for a device this build has no kernel for,\n"
        "or on a CUDA error.");
  m.def("_patch_embed_host", &patch_embed_host_py, py::arg("x"), py::arg("weight"), py::arg("pos"),
        py::arg("prefix"), py::arg("out"), py::arg("batch"), py::arg("height"), py::arg("width"), py::arg("dim"),
        py::arg("prefix_len"), py::arg("dtype"), py::arg("tile_m") = 128,
        "Test aid: the patch_embed kernels' indexing and epilogue on HOST pointers (same arguments, no\n"
        "tier/stream); prefix rows are assigned to M tiles of tile_m patches (the kernels use 128).");
}
