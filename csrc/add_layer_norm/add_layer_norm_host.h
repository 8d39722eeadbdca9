// Host twin of the add_layer_norm kernel (test aid, not a backend): the same per-element and
// per-row helpers (add_layer_norm.h) on host memory, one row at a time, so that GPU-less CI checks
// the kernel's arithmetic (residual rounding, shift + correction statistics, output rounding)
// against torch. Only the summation order differs from the kernel (sequential here, per thread
// then a butterfly there).
#pragma once

#include <vector>

#include "add_layer_norm/add_layer_norm.h"

namespace fastradio {
namespace detail {

template <DType kX, DType kW>
void add_layer_norm_host_rows(const AddLayerNormParams& p) {
  using XBits = typename Elem<kX>::Bits;
  using WBits = typename Elem<kW>::Bits;
  const auto* x = static_cast<const XBits*>(p.x);
  const auto* delta = static_cast<const WBits*>(p.delta);
  const auto* weight = static_cast<const WBits*>(p.weight);
  const auto* bias = static_cast<const WBits*>(p.bias);
  auto* x_new = static_cast<XBits*>(p.x_new);
  auto* out = static_cast<WBits*>(p.out);
  std::vector<float> v(static_cast<size_t>(p.dim));
  for (int64_t n = 0; n < p.rows; ++n) {
    const int64_t row = n * p.dim;
    float sum = 0.0f;
    for (int64_t d = 0; d < p.dim; ++d) {
      float xv = Elem<kX>::to_float(x[row + d]);
      if (delta != nullptr) {
        const XBits b = add_layer_norm_residual<kX>(xv, Elem<kW>::to_float(delta[row + d]));
        x_new[row + d] = b;
        xv = Elem<kX>::to_float(b);
      }
      v[d] = xv;
      sum += xv;
    }
    const float shift = add_layer_norm_shift(sum, p.dim);
    float s1 = 0.0f, s2 = 0.0f;
    for (int64_t d = 0; d < p.dim; ++d) {
      const float t = v[d] - shift;
      s1 += t;
      s2 += t * t;
    }
    const LayerNormStats s = add_layer_norm_stats(shift, s1, s2, p.dim, p.eps);
    for (int64_t d = 0; d < p.dim; ++d) {
      const float w = Elem<kW>::to_float(weight[d]);
      const float b = Elem<kW>::to_float(bias[d]);
      out[row + d] = Elem<kW>::from_float(add_layer_norm_apply(v[d], s, w, b));
    }
  }
}

}  // namespace detail

// add_layer_norm_fwd's contract on HOST pointers (the tier is ignored); same argument checks.
inline Status add_layer_norm_host(const AddLayerNormParams& p) {
  const Status s = add_layer_norm_check(p);
  if (s != Status::kSuccess) return s;
  using D = DType;
  if (p.x_dtype == p.w_dtype) {
    switch (p.x_dtype) {
      case D::kFloat32: detail::add_layer_norm_host_rows<D::kFloat32, D::kFloat32>(p); return Status::kSuccess;
      case D::kFloat16: detail::add_layer_norm_host_rows<D::kFloat16, D::kFloat16>(p); return Status::kSuccess;
      case D::kBFloat16: detail::add_layer_norm_host_rows<D::kBFloat16, D::kBFloat16>(p); return Status::kSuccess;
    }
  } else if (p.x_dtype == D::kFloat32) {
    switch (p.w_dtype) {
      case D::kFloat16: detail::add_layer_norm_host_rows<D::kFloat32, D::kFloat16>(p); return Status::kSuccess;
      case D::kBFloat16: detail::add_layer_norm_host_rows<D::kFloat32, D::kBFloat16>(p); return Status::kSuccess;
      default: break;
    }
  }
  return Status::kUnsupportedDType;
}

}  // namespace fastradio
