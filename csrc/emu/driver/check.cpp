#include "emu/driver/check.h"

#include <cmath>
#include <cstdio>
#include <stdexcept>

namespace fastradio::driver {
namespace {

constexpr double kFp32Bound = 1e-5;
constexpr double kFloorFactor = 2.0;
constexpr double kFloorSlack = 1e-6;

struct Metrics {
  double l2 = 0.0;
  double max = 0.0;
};

// Over the elements with !skip(i); `got` is read through get(i).
template <class Get, class Skip>
Metrics metrics(const std::vector<double>& ref, const Get& get, const Skip& skip) {
  double num = 0.0, den = 0.0, max_err = 0.0, max_ref = 0.0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (skip(i)) continue;
    const double d = get(i) - ref[i];
    num += d * d;
    den += ref[i] * ref[i];
    max_err = std::fmax(max_err, std::fabs(d));
    max_ref = std::fmax(max_ref, std::fabs(ref[i]));
  }
  const auto ratio = [](double a, double b) { return a == 0.0 ? 0.0 : (b == 0.0 ? INFINITY : a / b); };
  return Metrics{ratio(std::sqrt(num), std::sqrt(den)), ratio(max_err, max_ref)};
}

std::string fmt(const char* f, double a, double b = 0.0, double c = 0.0) {
  char s[160];
  std::snprintf(s, sizeof(s), f, a, b, c);
  return s;
}

}  // namespace

Verdict check(const std::vector<Output>& outputs) {
  Verdict v;
  double worst_ratio = -1.0;
  const auto add = [&](const std::string& s) { v.detail += (v.detail.empty() ? "" : "; ") + s; };
  for (const Output& o : outputs) {
    const Buffer& b = *o.buf;
    const auto is_exact = [&](size_t i) { return o.all_exact || (!o.exact.empty() && o.exact[i]); };
    int64_t nonfinite = 0, mismatched = 0, first_bad = -1, tolerance_elems = 0;
    for (size_t i = 0; i < o.ref.size(); ++i) {
      const int64_t e = int64_t(i);
      if (is_exact(i)) {
        if (b.bits(e) != encode(b.dtype(), o.ref[i])) {
          if (first_bad < 0) first_bad = e;
          ++mismatched;
        }
      } else {
        ++tolerance_elems;
        if (!std::isfinite(b.get(e)) && std::isfinite(o.ref[i])) {
          if (first_bad < 0) first_bad = e;
          ++nonfinite;
        }
      }
    }
    if (nonfinite > 0 || mismatched > 0) {
      v.pass = false;
      std::string s = o.name + ": ";
      if (nonfinite > 0) s += std::to_string(nonfinite) + " non-finite ";
      if (mismatched > 0) s += std::to_string(mismatched) + " not bit-exact ";
      s += "of " + std::to_string(o.ref.size()) + fmt(" (first at %.0f: got %.9g, want %.9g)", double(first_bad),
                                                     b.get(first_bad), o.ref[size_t(first_bad)]);
      add(s);
    }
    if (tolerance_elems == 0) {
      if (mismatched == 0) add(o.name + " bit-exact");
      continue;
    }
    // Non-finite elements are reported above; the metrics describe the rest.
    const auto skip = [&](size_t i) { return is_exact(i) || !std::isfinite(b.get(int64_t(i))); };
    const Metrics got = metrics(o.ref, [&](size_t i) { return b.get(int64_t(i)); }, skip);
    Metrics bound{kFp32Bound, kFp32Bound};
    if (b.dtype() != DType::kFloat32) {
      if (o.floor.size() != o.ref.size()) throw std::logic_error(o.name + ": a 16-bit output needs its precision floor");
      const Metrics fl = metrics(o.ref, [&](size_t i) { return o.floor[i]; }, skip);
      bound = Metrics{kFloorFactor * fl.l2 + kFloorSlack, kFloorFactor * fl.max + kFloorSlack};
    }
    const bool ok = got.l2 <= bound.l2 && got.max <= bound.max;
    if (!ok) v.pass = false;
    for (const auto& [err, lim] : {std::pair{got.l2, bound.l2}, std::pair{got.max, bound.max}}) {
      if (err / lim > worst_ratio) {
        worst_ratio = err / lim;
        v.err = err;
        v.bound = lim;
      }
    }
    add(o.name + (ok ? "" : " OUT OF BOUND") + fmt(" l2 %.2e/%.2e", got.l2, bound.l2) +
        fmt(" max %.2e/%.2e", got.max, bound.max));
  }
  return v;
}

}  // namespace fastradio::driver
