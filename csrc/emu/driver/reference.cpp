#include "emu/driver/reference.h"

#include <algorithm>
#include <cmath>

#include "emu/driver/buffer.h"  // round_to

namespace fastradio::driver {
namespace {

constexpr int kPatch = 16;
constexpr int kChannels = 3;
constexpr int kPatchK = kChannels * kPatch * kPatch;

// One axis of the resize: output index i reads i0 and i1 with weight lambda on i1.
struct Tap {
  int64_t i0, i1;
  double lambda;
};

Tap tap(int64_t i, int64_t n_in, int64_t n_out, bool align_corners) {
  double src;
  if (align_corners) {
    // The spec's fp32 coordinates: scale in fp32, and the fp32-rounded product (the product of a
    // float and an integer below 2^24 is exact in double, so one cast rounds it as fp32 would).
    const float scale = n_out > 1 ? float(n_in - 1) / float(n_out - 1) : 0.0f;
    src = double(static_cast<float>(double(scale) * double(i)));
  } else {
    // radio-family spec §3: scale = fp32(G) / fp32(m), src = (i + 0.5)·scale − 0.5 with one fp32
    // rounding (torch's CPU weights), clamped at 0; lambda clamped to [0, 1].
    const float scale = float(n_in) / float(n_out);
    src = double(std::max(0.0f, std::fmaf(float(i) + 0.5f, scale, -0.5f)));
  }
  const int64_t i0 = std::min(int64_t(std::floor(src)), n_in - 1);
  const double lambda = std::min(1.0, src - double(i0));  // src - i0 is exact in fp32 too
  return Tap{i0, std::min(i0 + 1, n_in - 1), lambda};
}

double gelu(double y) { return 0.5 * y * (1.0 + std::erf(y / std::sqrt(2.0))); }

}  // namespace

std::vector<double> pos_embed_reference(const std::vector<double>& table, int64_t grid, int64_t dim, int64_t h,
                                        int64_t w, bool align_corners) {
  const int64_t m = std::max(h, w);
  std::vector<double> out(size_t(h * w * dim));
  for (int64_t r = 0; r < h; ++r) {
    const Tap ty = tap(r, grid, m, align_corners);
    for (int64_t c = 0; c < w; ++c) {
      const Tap tx = tap(c, grid, m, align_corners);
      const double* a = &table[size_t((ty.i0 * grid + tx.i0) * dim)];
      const double* b = &table[size_t((ty.i0 * grid + tx.i1) * dim)];
      const double* cc = &table[size_t((ty.i1 * grid + tx.i0) * dim)];
      const double* d = &table[size_t((ty.i1 * grid + tx.i1) * dim)];
      double* o = &out[size_t((r * w + c) * dim)];
      for (int64_t k = 0; k < dim; ++k) {
        const double top = (1.0 - tx.lambda) * a[k] + tx.lambda * b[k];
        const double bottom = (1.0 - tx.lambda) * cc[k] + tx.lambda * d[k];
        o[k] = (1.0 - ty.lambda) * top + ty.lambda * bottom;
      }
    }
  }
  return out;
}

Expected pos_embed_expected(const std::vector<double>& table, int64_t grid, int64_t dim, int64_t h, int64_t w,
                            DType out, bool align_corners) {
  Expected e;
  e.ref = pos_embed_reference(table, grid, dim, h, w, align_corners);
  if (out != DType::kFloat32)
    for (double v : e.ref) e.floor.push_back(round_to(out, v));
  return e;
}

Expected patch_embed_expected(const std::vector<double>& x, const std::vector<double>& weight,
                              const std::vector<double>& pos, const std::vector<double>& prefix,
                              const PatchEmbedShape& s, DType dtype) {
  const int64_t gh = s.height / kPatch, gw = s.width / kPatch, hw = gh * gw, tokens = s.prefix_len + hw;
  const bool floor = dtype != DType::kFloat32;
  Expected e;
  e.ref.assign(size_t(s.batch * tokens * s.dim), 0.0);
  if (floor) e.floor.assign(e.ref.size(), 0.0);
  e.exact.assign(e.ref.size(), 0);
  std::vector<double> a(kPatchK);
  for (int64_t b = 0; b < s.batch; ++b) {
    for (int64_t j = 0; j < s.prefix_len; ++j)
      for (int64_t n = 0; n < s.dim; ++n) {
        const size_t o = size_t((b * tokens + j) * s.dim + n);
        e.ref[o] = prefix[size_t(j * s.dim + n)];
        if (floor) e.floor[o] = e.ref[o];
        e.exact[o] = 1;
      }
    for (int64_t r = 0; r < gh; ++r)
      for (int64_t c = 0; c < gw; ++c) {
        // Feature f = ch*256 + dy*16 + dx of patch (r, c): pixel (16r + dy, 16c + dx) of channel ch.
        for (int f = 0; f < kPatchK; ++f) {
          const int64_t ch = f / (kPatch * kPatch), dy = (f / kPatch) % kPatch, dx = f % kPatch;
          a[size_t(f)] = x[size_t(((b * kChannels + ch) * s.height + kPatch * r + dy) * s.width + kPatch * c + dx)];
        }
        const int64_t t = r * gw + c;
        for (int64_t n = 0; n < s.dim; ++n) {
          double acc = 0.0;
          for (int f = 0; f < kPatchK; ++f) acc += a[size_t(f)] * weight[size_t(n * kPatchK + f)];
          const double p = pos[size_t(t * s.dim + n)];
          const size_t o = size_t((b * tokens + s.prefix_len + t) * s.dim + n);
          e.ref[o] = acc + p;
          if (floor) e.floor[o] = round_to(dtype, round_to(dtype, acc) + p);
        }
      }
  }
  return e;
}

std::vector<double> add_residual(const std::vector<double>& x, const std::vector<double>& delta, DType x_dtype) {
  std::vector<double> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const float sum = static_cast<float>(x[i]) + static_cast<float>(delta[i]);  // both exact in fp32
    out[i] = round_to(x_dtype, sum);
  }
  return out;
}

Expected layer_norm_expected(const std::vector<double>& v, const std::vector<double>& weight,
                             const std::vector<double>& bias, int64_t rows, int64_t dim, double eps, DType w_dtype) {
  Expected e;
  e.ref.resize(v.size());
  for (int64_t r = 0; r < rows; ++r) {
    const double* row = &v[size_t(r * dim)];
    // Corrected two-pass statistics: exact enough in fp64 even for mean 1e3 with std 1e-2.
    double s0 = 0.0;
    for (int64_t d = 0; d < dim; ++d) s0 += row[d];
    const double shift = s0 / double(dim);
    double s1 = 0.0, s2 = 0.0;
    for (int64_t d = 0; d < dim; ++d) {
      s1 += row[d] - shift;
      s2 += (row[d] - shift) * (row[d] - shift);
    }
    const double corr = s1 / double(dim);
    const double mean = shift + corr;
    const double var = std::max(0.0, s2 / double(dim) - corr * corr);
    const double rstd = 1.0 / std::sqrt(var + eps);
    for (int64_t d = 0; d < dim; ++d) e.ref[size_t(r * dim + d)] = (row[d] - mean) * rstd * weight[size_t(d)] + bias[size_t(d)];
  }
  if (w_dtype != DType::kFloat32)
    for (double x : e.ref) e.floor.push_back(round_to(w_dtype, x));
  return e;
}

Expected linear_expected(const std::vector<double>& x, const std::vector<double>& weight,
                         const std::vector<double>& bias, const std::vector<double>& residual, const LinearShape& s,
                         DType dtype) {
  const bool floor = dtype != DType::kFloat32;
  Expected e;
  e.ref.resize(size_t(s.n * s.m));
  if (floor) e.floor.resize(e.ref.size());
  for (int64_t i = 0; i < s.n; ++i)
    for (int64_t j = 0; j < s.m; ++j) {
      double acc = 0.0;
      for (int64_t k = 0; k < s.k; ++k) acc += x[size_t(i * s.k + k)] * weight[size_t(j * s.k + k)];
      const size_t o = size_t(i * s.m + j);
      double y = acc, t = round_to(dtype, acc);
      if (s.bias) {
        y += bias[size_t(j)];
        t = round_to(dtype, t + bias[size_t(j)]);
      }
      if (s.gelu) {
        y = gelu(y);
        t = round_to(dtype, gelu(t));
      }
      if (s.residual) {
        y += residual[o];
        t = round_to(dtype, t + residual[o]);
      }
      e.ref[o] = y;
      if (floor) e.floor[o] = t;
    }
  return e;
}

Expected attention_expected(const std::vector<double>& qkv, const std::vector<int32_t>& cu, int64_t heads,
                            int64_t head_dim, DType dtype) {
  const bool floor = dtype != DType::kFloat32;
  const int64_t ld = 3 * heads * head_dim, ldo = heads * head_dim;
  const int64_t rows = cu.back();
  const double scale = 1.0 / std::sqrt(double(head_dim));
  const double scale_f = double(static_cast<float>(scale));  // torch multiplies by the fp32 scalar
  Expected e;
  e.ref.resize(size_t(rows * ldo));
  if (floor) e.floor.resize(e.ref.size());
  for (size_t s = 0; s + 1 < cu.size(); ++s) {
    const int64_t start = cu[s], len = cu[s + 1] - cu[s];
    std::vector<double> p(static_cast<size_t>(len)), pf(static_cast<size_t>(len));
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t i = 0; i < len; ++i) {
        const double* q = &qkv[size_t((start + i) * ld + h * head_dim)];
        double mx = -INFINITY, mxf = -INFINITY;
        for (int64_t j = 0; j < len; ++j) {
          const double* k = &qkv[size_t((start + j) * ld + (heads + h) * head_dim)];
          double dot = 0.0;
          for (int64_t d = 0; d < head_dim; ++d) dot += q[d] * k[d];
          p[size_t(j)] = dot * scale;
          mx = std::max(mx, p[size_t(j)]);
          if (floor) {
            pf[size_t(j)] = round_to(dtype, round_to(dtype, dot) * scale_f);
            mxf = std::max(mxf, pf[size_t(j)]);
          }
        }
        double sum = 0.0, sumf = 0.0;
        for (int64_t j = 0; j < len; ++j) {
          p[size_t(j)] = std::exp(p[size_t(j)] - mx);
          sum += p[size_t(j)];
          if (floor) {
            pf[size_t(j)] = std::exp(pf[size_t(j)] - mxf);
            sumf += pf[size_t(j)];
          }
        }
        for (int64_t j = 0; j < len; ++j) {
          p[size_t(j)] /= sum;
          if (floor) pf[size_t(j)] = round_to(dtype, pf[size_t(j)] / sumf);
        }
        for (int64_t d = 0; d < head_dim; ++d) {
          double o = 0.0, of = 0.0;
          for (int64_t j = 0; j < len; ++j) {
            const double v = qkv[size_t((start + j) * ld + (2 * heads + h) * head_dim + d)];
            o += p[size_t(j)] * v;
            of += pf[size_t(j)] * v;
          }
          const size_t at = size_t((start + i) * ldo + h * head_dim + d);
          e.ref[at] = o;
          if (floor) e.floor[at] = round_to(dtype, of);
        }
      }
  }
  return e;
}

}  // namespace fastradio::driver
