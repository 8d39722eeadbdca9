#include "emu/driver/random.h"

#include <cmath>

namespace fastradio::driver {

uint64_t Rng::next() {
  uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

double Rng::uniform() { return double((next() >> 11) + 1) * 0x1.0p-53; }

double Rng::normal() {
  const double r = std::sqrt(-2.0 * std::log(uniform()));
  return r * std::cos(6.283185307179586 * uniform());
}

int64_t Rng::below(int64_t n) { return int64_t(next() % uint64_t(n)); }

uint64_t case_seed(uint64_t run_seed, const std::string& name) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a
  for (unsigned char ch : name) h = (h ^ ch) * 0x100000001b3ull;
  return h ^ (run_seed * 0x9e3779b97f4a7c15ull);
}

void fill_normal(Buffer& b, Rng& rng, double mean, double std) {
  for (int64_t i = 0; i < b.numel(); ++i) b.set(i, mean + std * rng.normal());
}

void fill_activations(Buffer& b, Rng& rng) {
  fill_normal(b, rng, 0.0, 1.0);
  const int64_t outliers = b.numel() / 200 + 1;
  for (int64_t j = 0; j < outliers; ++j) {
    const double mag = 6.0 + 6.0 * rng.uniform();
    b.set(rng.below(b.numel()), rng.uniform() < 0.5 ? -mag : mag);
  }
}

void fill_weights(Buffer& b, Rng& rng, int64_t fan_in) { fill_normal(b, rng, 0.0, 1.0 / std::sqrt(double(fan_in))); }

}  // namespace fastradio::driver
