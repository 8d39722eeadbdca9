// Runs one case: prepare it, run it under several emulator schedules, require bitwise-identical
// outputs across them, check the first run against the reference.
#pragma once

#include <cstdint>
#include <string>

#include "emu/driver/case.h"

namespace fastradio::driver {

struct RunOptions {
  int orders = 4;
  uint64_t seed = 0;
};

struct CaseResult {
  bool pass = true;
  double err = 0.0, bound = 0.0, seconds = 0.0;
  std::string detail;
};

CaseResult run_case(const Case& c, const RunOptions& opt);

}  // namespace fastradio::driver
