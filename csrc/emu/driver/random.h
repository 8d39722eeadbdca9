// Seeded random inputs with realistic magnitudes. The generator is written out (splitmix64 and
// Box-Muller) rather than taken from <random>, whose distributions differ between standard
// libraries: a case's inputs depend only on its seed.
#pragma once

#include <cstdint>
#include <string>

#include "emu/driver/buffer.h"

namespace fastradio::driver {

class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next();
  double uniform();  // in (0, 1]
  double normal();   // N(0, 1)
  int64_t below(int64_t n);  // in [0, n)

 private:
  uint64_t state_;
};

// A case's seed: the run's seed mixed with the case name, so a case draws the same inputs
// whichever other cases are selected.
uint64_t case_seed(uint64_t run_seed, const std::string& name);

// N(mean, std^2), rounded to the buffer's dtype.
void fill_normal(Buffer& b, Rng& rng, double mean, double std);

// Activations: N(0, 1) with about 0.5 % (at least one) outliers of magnitude 6..12, the
// "massive activations" of trained ViTs that stress fp16 ranges and peaky softmaxes.
void fill_activations(Buffer& b, Rng& rng);

// nn.Linear-like weights: N(0, 1 / fan_in).
void fill_weights(Buffer& b, Rng& rng, int64_t fan_in);

}  // namespace fastradio::driver
