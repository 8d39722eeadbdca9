// fp64 references of the five ops, written from the ops' contracts (the <op>.h headers and the
// spec), not from the kernels: no kernel helper is called for the math. Inputs are the values the
// kernels read (already rounded to their dtypes), as doubles.
//
// Precision floors (DESIGN §7: a 16-bit kernel may be at most 2x as far from the reference as a
// plain implementation in the same dtype). The floor models eager PyTorch in that dtype: every
// matmul accumulates in fp32 and rounds its result to the dtype, every elementwise op computes in
// fp32 and rounds its result. The fp32 accumulation and the fp32 elementwise math are modelled as
// exact (their error is orders below a 16-bit rounding), so each floor is a chain of roundings of
// exact intermediates:
//   pos_embed       round(resize(table))                    (torch resizes in fp32, then casts)
//   patch_embed     round(round(patches . W^T) + pos)       (conv/matmul, then the add)
//   add_layer_norm  round_w(LN(x_new) * w + b)              (F.layer_norm computes in fp32 and
//                                                           rounds once; x_new is bit-exact)
//   linear          t = round(x . W^T); t = round(t + bias); t = round(gelu(t)); round(t + residual)
//                   (each step only if the epilogue has it)
//   attention       S = round(q . k^T); S = round(S * float(Dh^-0.5)); P = round(softmax(S));
//                   O = round(P . V)
#pragma once

#include <cstdint>
#include <vector>

#include "common/dtype.h"

namespace fastradio::driver {

// One output tensor's expected values.
struct Expected {
  std::vector<double> ref;    // fp64 reference
  std::vector<double> floor;  // the precision floor (empty for fp32 outputs)
  std::vector<char> exact;    // nonzero where the output must equal ref bit for bit (may be empty)
};

// (grid, grid, dim) table -> (h*w, dim): bilinear resize to (m, m), m = max(h, w), top-left h x w
// crop, with the specs' fp32 source coordinates and the blend in fp64. align_corners=True
// (C-RADIOv2): scale = float(G-1)/float(m-1), src = fp32-rounded scale*i; False (C-RADIOv4):
// scale = float(G)/float(m), src = max(0, fmaf(i + 0.5, scale, -0.5)); i0 = floor(src),
// lambda = src - i0. (Swapping the two is the self-test's "realistic bug".)
std::vector<double> pos_embed_reference(const std::vector<double>& table, int64_t grid, int64_t dim, int64_t h,
                                        int64_t w, bool align_corners = true);
Expected pos_embed_expected(const std::vector<double>& table, int64_t grid, int64_t dim, int64_t h, int64_t w,
                            DType out, bool align_corners);

struct PatchEmbedShape {
  int64_t batch, height, width, dim, prefix_len;
};
// tokens (batch, prefix_len + h*w, dim) = [prefix; im2patch(x) . W^T + pos]; prefix rows exact.
Expected patch_embed_expected(const std::vector<double>& x, const std::vector<double>& weight,
                              const std::vector<double>& pos, const std::vector<double>& prefix,
                              const PatchEmbedShape& s, DType dtype);

// x_new = round_x(fp32(x + delta)) exactly as add_layer_norm.h specifies (one fp32 add, one
// rounding to x's dtype): the values the kernel must write bit for bit.
std::vector<double> add_residual(const std::vector<double>& x, const std::vector<double>& delta, DType x_dtype);
// LayerNorm of each row of v (rows, dim) with the biased variance, * weight + bias.
Expected layer_norm_expected(const std::vector<double>& v, const std::vector<double>& weight,
                             const std::vector<double>& bias, int64_t rows, int64_t dim, double eps, DType w_dtype);

struct LinearShape {
  int64_t n, m, k;
  bool bias, gelu, residual;
};
// out (n, m) = gelu?(x (n, k) . W (m, k)^T + bias) + residual, exact erf GELU. Absent terms:
// empty vectors.
Expected linear_expected(const std::vector<double>& x, const std::vector<double>& weight,
                         const std::vector<double>& bias, const std::vector<double>& residual, const LinearShape& s,
                         DType dtype);

// out (rows, H*Dh) = softmax(q k^T / sqrt(Dh)) v per image [cu[s], cu[s+1]) and head, from qkv
// (rows, 3*H*Dh) = [q | k | v] with heads contiguous inside each third.
Expected attention_expected(const std::vector<double>& qkv, const std::vector<int32_t>& cu, int64_t heads,
                            int64_t head_dim, DType dtype);

}  // namespace fastradio::driver
