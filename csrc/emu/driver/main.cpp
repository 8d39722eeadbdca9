// emu_driver: every op / tier / dtype of the CUDA core through its launcher on the emulated device
// (csrc/emu/: the kernels compiled as host C++, launchers taking host pointers), or, built with
// FASTRADIO_DRIVER_HOST_TWINS, through the ops' host twins; outputs checked against fp64
// references (reference.h) by the project's accuracy rule (check.h), and required to be
// bit-identical under several emulator schedules (runner.h).
//
// stdout: per case  CASE <name> <PASS|FAIL> <error> <bound> <seconds> <detail>  (tab-separated;
// error: the metric nearest its bound), then  SUMMARY <passed> <failed>;  exit status 0 iff every
// selected case passed (none selected is a failure). stderr: "[emu-case-begin] <name>" and
// "[emu-case-end] <name>" around each case, so a wrapper can pin sanitizer reports on it.
//
// Host-twin build (no emulator needed), from the repository root:
//   g++ -std=c++17 -O2 -Wall -Wextra -Icsrc -I/usr/local/cuda-13.0/include -DFASTRADIO_DRIVER_HOST_TWINS
//       csrc/emu/driver/*.cpp -o build/emu_driver_twins
// Emulator build: the same sources without the macro, with the emulator's include paths, its
// FASTRADIO_HAS_<OP>_<TIER> definitions, and linked with the emulated kernels.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <set>
#include <string>
#include <vector>

#include "emu/driver/case.h"
#include "emu/driver/emu.h"
#include "emu/driver/runner.h"
#include "emu/driver/self_test.h"

namespace fastradio::driver {
namespace {

#if defined(FASTRADIO_DRIVER_HOST_TWINS)
constexpr const char* kImpl = "host-twin";
#else
constexpr const char* kImpl = "device";
#endif

const char* const kOps[] = {"pos_embed", "patch_embed", "add_layer_norm", "linear", "attention"};

struct Options {
  std::set<std::string> ops, tiers;
  std::set<DType> dtypes;
  std::vector<std::string> filters;
  bool quick = false, list = false, self_test = false;
  RunOptions run;
};

[[noreturn]] void usage(const char* error) {
  if (error != nullptr) std::fprintf(stderr, "emu_driver: %s\n", error);
  std::fprintf(stderr,
               "usage: emu_driver [--op OP[,OP]] [--tier TIER[,..]] [--dtype D[,..]] [--filter SUBSTRING]\n"
               "                  [--quick] [--list] [--orders N] [--seed S] [--impl %s] [--self-test]\n"
               "  OP: pos_embed patch_embed add_layer_norm linear attention; TIER: cuda_core mma_sm75 mma_sm80;\n"
               "  D: f32 f16 bf16. Options that take a value may repeat. --orders: schedules per case (default 4:\n"
               "  forward, reverse greedy, forward greedy, shuffled). This build runs the %s implementation.\n",
               kImpl, kImpl);
  std::exit(2);
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    const size_t end = s.find(',', start);
    const std::string item = s.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (!item.empty()) out.push_back(item);
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return out;
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage((a + " needs a value").c_str());
      return argv[++i];
    };
    if (a == "--op") {
      for (const std::string& v : split(value())) {
        bool known = false;
        for (const char* op : kOps) known = known || v == op;
        if (!known) usage(("unknown op " + v).c_str());
        o.ops.insert(v);
      }
    } else if (a == "--tier") {
      for (const std::string& v : split(value())) {
        bool known = false;
        for (int t = 0; t < kNumTiers; ++t) known = known || v == tier_name(static_cast<Tier>(t));
        if (!known) usage(("unknown tier " + v).c_str());
        o.tiers.insert(v);
      }
    } else if (a == "--dtype") {
      for (const std::string& v : split(value())) {
        DType t;
        if (!parse_dtype(v.c_str(), &t)) usage(("unknown dtype " + v).c_str());
        o.dtypes.insert(t);
      }
    } else if (a == "--filter") {
      o.filters.push_back(value());
    } else if (a == "--orders") {
      o.run.orders = std::atoi(value().c_str());
      if (o.run.orders < 1) usage("--orders must be at least 1");
    } else if (a == "--seed") {
      o.run.seed = std::strtoull(value().c_str(), nullptr, 0);
    } else if (a == "--impl") {
      if (value() != kImpl) usage("this build has only the implementation named below");
    } else if (a == "--quick") {
      o.quick = true;
    } else if (a == "--list") {
      o.list = true;
    } else if (a == "--self-test") {
      o.self_test = true;
    } else if (a == "--help" || a == "-h") {
      usage(nullptr);
    } else {
      usage(("unknown argument " + a).c_str());
    }
  }
  return o;
}

bool selected(const Case& c, const Options& o) {
  if (o.quick && !c.quick) return false;
  if (!o.ops.empty() && !o.ops.count(c.op)) return false;
  if (!o.tiers.empty() && !o.tiers.count(tier_name(c.tier))) return false;
  if (!o.dtypes.empty()) {
    bool any = false;
    for (DType t : c.dtypes) any = any || o.dtypes.count(t);
    if (!any) return false;
  }
  for (const std::string& f : o.filters)
    if (c.name.find(f) == std::string::npos) return false;
  return true;
}

// Whether the device can run a tier: below the tier's lowest arch an emulated device would trap,
// as a real one would be refused by the binding. The host twins run every tier.
bool device_runs(Tier t) {
#if defined(FASTRADIO_DRIVER_HOST_TWINS)
  (void)t;
  return true;
#else
  const int min_arch = t == Tier::kMmaSm80 ? 80 : t == Tier::kMmaSm75 ? 75 : 60;
  return emu::emulated_arch() >= min_arch;
#endif
}

int run(int argc, char** argv) {
  const Options opt = parse(argc, argv);
  if (opt.self_test) return run_self_test() == 0 ? 0 : 1;

  std::vector<Case> cases;
  std::set<std::string> left_out;  // tiers the emulated arch cannot run
  for (Case& c : all_cases()) {
    if (!selected(c, opt)) continue;
    if (device_runs(c.tier)) {
      cases.push_back(std::move(c));
    } else {
      left_out.insert(tier_name(c.tier));
    }
  }
  for (const std::string& t : left_out)
    std::fprintf(stderr, "emu_driver: the emulated sm_%d cannot run tier %s: its cases are left out\n",
                 emu::emulated_arch(), t.c_str());
  if (opt.list) {
    for (const Case& c : cases) std::printf("%s\n", c.name.c_str());
    return 0;
  }
  if (cases.empty()) {
    std::fprintf(stderr, "emu_driver: no case selected\n");
    std::printf("SUMMARY\t0\t0\n");
    return 1;
  }
  for (int d = 0; d < kNumDevices; ++d) emu::set_sm_count(d, kDeviceSms[d]);

  int passed = 0, failed = 0;
  for (const Case& c : cases) {
    std::fprintf(stderr, "[emu-case-begin] %s\n", c.name.c_str());
    std::fflush(stderr);
    const CaseResult r = run_case(c, opt.run);
    (r.pass ? passed : failed) += 1;
    std::printf("CASE\t%s\t%s\t%.3e\t%.3e\t%.3f\t%s\n", c.name.c_str(), r.pass ? "PASS" : "FAIL", r.err, r.bound,
                r.seconds, r.detail.c_str());
    std::fflush(stdout);
    std::fprintf(stderr, "[emu-case-end] %s\n", c.name.c_str());
    std::fflush(stderr);
  }
  std::printf("SUMMARY\t%d\t%d\n", passed, failed);
  return failed == 0 ? 0 : 1;
}

}  // namespace
}  // namespace fastradio::driver

int main(int argc, char** argv) {
  try {
    return fastradio::driver::run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "emu_driver: %s\n", e.what());
    return 2;
  }
}
