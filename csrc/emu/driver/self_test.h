// --self-test: the checker must fail realistic bugs (and pass the correct answers), so that a PASS
// from the driver means something. No kernel runs: each "bug" is an output computed on the host.
#pragma once

namespace fastradio::driver {

// Prints one SELFTEST line per check; returns the number of checks whose verdict was wrong.
int run_self_test();

}  // namespace fastradio::driver
