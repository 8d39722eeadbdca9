#include "emu/driver/runner.h"

#include <chrono>
#include <cstdio>
#include <cstring>

#include "emu/driver/emu.h"
#include "emu/driver/random.h"

namespace fastradio::driver {
namespace {

// Schedule k of a case: forward in rounds; reverse and greedy (the last warp runs ahead to its
// next barrier before the others start: missing barriers show up as poisoned reads); forward
// greedy; then shuffles with distinct seeds. The block order changes with the thread order.
emu::Schedule schedule(int k, uint64_t seed) {
  emu::Schedule s;
  if (k == 0) return s;
  const emu::Order o = k == 1 ? emu::Order::kReverse : k == 2 ? emu::Order::kForward : emu::Order::kShuffle;
  s.blocks = s.threads = o;
  s.greedy = k == 1 || k == 2;
  s.seed = seed + uint64_t(k);
  return s;
}

const char* order_name(int k) {
  return k == 0 ? "forward" : k == 1 ? "reverse greedy" : k == 2 ? "forward greedy" : "shuffle";
}

// First element where two snapshots of `b` differ, or -1.
int64_t first_difference(const Buffer& b, const std::vector<unsigned char>& x, const std::vector<unsigned char>& y) {
  const int64_t size = dtype_size(b.dtype());
  for (int64_t i = 0; i < b.numel(); ++i)
    if (std::memcmp(&x[size_t(i * size)], &y[size_t(i * size)], size_t(size)) != 0) return i;
  return -1;
}

// Element i of a snapshot (little-endian storage, as on every host the emulator runs on).
double snapshot_value(DType t, const std::vector<unsigned char>& s, int64_t i) {
  uint32_t u = 0;
  std::memcpy(&u, &s[size_t(i * dtype_size(t))], size_t(dtype_size(t)));
  return decode(t, u);
}

}  // namespace

CaseResult run_case(const Case& c, const RunOptions& opt) {
  const auto t0 = std::chrono::steady_clock::now();
  CaseResult r;
  const auto fail = [&](const std::string& why) {
    r.pass = false;
    r.detail += (r.detail.empty() ? "" : "; ") + why;
  };
  const uint64_t seed = case_seed(opt.seed, c.name);
  std::unique_ptr<Instance> inst = c.make(seed);

  std::vector<std::vector<unsigned char>> inputs, in_place;
  for (const Buffer* b : inst->inputs) inputs.push_back(b->snapshot());
  for (const Buffer* b : inst->in_place) in_place.push_back(b->snapshot());
  std::vector<std::vector<unsigned char>> first;  // order 0's outputs
  for (int k = 0; k < opt.orders; ++k) {
    for (Output& o : inst->outputs) o.buf->fill_nan();
    for (size_t i = 0; i < in_place.size(); ++i) inst->in_place[i]->restore(in_place[i]);
    emu::set_schedule(schedule(k, seed));
#if !defined(FASTRADIO_DRIVER_HOST_TWINS)
    if (cudaSetDevice(c.device) != cudaSuccess) {
      fail("cudaSetDevice(" + std::to_string(c.device) + ") failed");
      break;
    }
#endif
    const Status st = inst->run();
    const std::vector<std::string> errors = emu::take_errors();
    const std::string tag = std::string(" (order ") + order_name(k) + ")";
    if (st != Status::kSuccess) fail(std::string("status: ") + status_name(st) + tag);
    for (const std::string& e : errors) {
      std::fprintf(stderr, "[emu-error] %s%s: %s\n", c.name.c_str(), tag.c_str(), e.c_str());
      fail("emulator: " + e + tag);
    }
    for (size_t i = 0; i < inputs.size(); ++i)
      if (inst->inputs[i]->snapshot() != inputs[i]) fail("input " + std::to_string(i) + " modified" + tag);
    if (st != Status::kSuccess) break;
    if (k == 0) {
      const Verdict v = check(inst->outputs);
      r.err = v.err;
      r.bound = v.bound;
      if (!v.pass) r.pass = false;
      r.detail += (r.detail.empty() ? "" : "; ") + v.detail;
      for (const Output& o : inst->outputs) first.push_back(o.buf->snapshot());
      continue;
    }
    for (size_t i = 0; i < inst->outputs.size(); ++i) {
      const Output& o = inst->outputs[i];
      const int64_t at = first_difference(*o.buf, first[i], o.buf->snapshot());
      if (at >= 0) {
        char s[200];
        std::snprintf(s, sizeof(s), "%s differs from order forward at %lld (%.9g vs %.9g)", o.name.c_str(),
                      static_cast<long long>(at), o.buf->get(at), snapshot_value(o.buf->dtype(), first[i], at));
        fail(s + tag);
      }
    }
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace fastradio::driver
