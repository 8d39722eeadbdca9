// The accuracy rule (DESIGN §7) applied to a case's outputs.
//
// Metrics of an output against its fp64 reference, over the elements not checked bit for bit:
//   relative L2 = ||got - ref||_2 / ||ref||_2,   max = max|got - ref| / max|ref|.
// Bounds: fp32 outputs 1e-5 for both; fp16/bf16 outputs 2 x the same metric of the precision
// floor (reference.h: a plain same-dtype implementation on the same rounded inputs) + 1e-6.
// Elements marked exact (x_new of add_layer_norm, copied prefix rows, identity resizes) must equal
// the reference's bits. A non-finite element whose reference is finite (an unwritten, NaN-poisoned
// output among them) always fails.
#pragma once

#include <string>
#include <vector>

#include "emu/driver/buffer.h"

namespace fastradio::driver {

struct Output {
  std::string name;
  Buffer* buf = nullptr;
  std::vector<double> ref;    // fp64 reference, one per element
  std::vector<double> floor;  // fp16/bf16 outputs: the precision floor's values, one per element
  std::vector<char> exact;    // per element, nonzero: bit-exact; empty: none (unless all_exact)
  bool all_exact = false;
};

struct Verdict {
  bool pass = true;
  double err = 0.0;    // of all tolerance metrics, the one nearest its bound (relative)
  double bound = 0.0;  // that metric's bound
  std::string detail;  // one line, no tabs
};

Verdict check(const std::vector<Output>& outputs);

}  // namespace fastradio::driver
