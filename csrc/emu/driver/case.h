// The case registry: what a case is, and the interface every op's cases implement.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "common/status.h"
#include "common/tier.h"
#include "emu/driver/buffer.h"
#include "emu/driver/check.h"

namespace fastradio::driver {

// The emulated devices and their SM counts (cudaDevAttrMultiProcessorCount), set once at start:
// the launchers pick tile configs from it (linear mma_sm80: 64 x 128 tiles when the 128 x 128 grid
// has fewer blocks than SMs; attention's mma tiers: 4 or 8 warps), so a case picks the config it
// tests by its device.
inline constexpr int kNumDevices = 2;
inline constexpr int kDeviceSms[kNumDevices] = {132, 2};

// One prepared case: inputs drawn, references computed, outputs described. Subclasses own the
// buffers and the op's Params.
class Instance {
 public:
  virtual ~Instance() = default;
  // One run of the op on the buffers as they are: the launcher (`<op>_fwd(params, nullptr)`) on the
  // emulated device, or in host-twin builds (FASTRADIO_DRIVER_HOST_TWINS) the op's host twin.
  virtual Status run() = 0;

  std::vector<Output> outputs;
  std::vector<const Buffer*> inputs;  // read-only: a run must leave them as they are
  std::vector<Buffer*> in_place;      // outputs that start as an input (restored before each run)

 protected:
  Buffer& make(DType dtype, int64_t numel, int64_t offset = 0) {
    owned_.push_back(std::make_unique<Buffer>(dtype, numel, offset));
    return *owned_.back();
  }
  Output& add_output(const std::string& name, Buffer& buf);

 private:
  std::vector<std::unique_ptr<Buffer>> owned_;
};

struct Case {
  std::string name;  // <op>/<tier>/<dtype>/<variant>/<shape>
  std::string op;
  Tier tier = Tier::kCudaCore;
  std::vector<DType> dtypes;  // what --dtype matches (add_layer_norm: x's and w's)
  int device = 0;             // index into kDeviceSms
  bool quick = false;         // the first case of its (op, tier, dtypes): the --quick subset
  std::function<std::unique_ptr<Instance>(uint64_t seed)> make;
};

// Every case this build can run, in a fixed order, `quick` set. Throws std::logic_error if the
// cases miss a dtype combination a registered tier takes (see case.cpp).
std::vector<Case> all_cases();

// Per-op registration (cases_<op>.cpp). Whether a tier is present: cuda_core always; a tensor-core
// tier when the build compiled it (FASTRADIO_HAS_<OP>_<TIER>) or, in host-twin builds, when the op
// has a twin for it.
void add_pos_embed_cases(std::vector<Case>& cases);
void add_patch_embed_cases(std::vector<Case>& cases);
void add_add_layer_norm_cases(std::vector<Case>& cases);
void add_linear_cases(std::vector<Case>& cases);
void add_attention_cases(std::vector<Case>& cases);

// "f32", "mma_sm80", ... joined with '/': the common head of case names.
std::string case_name(const std::string& op, Tier tier, const std::string& dtype, const std::string& variant,
                      const std::string& shape);

}  // namespace fastradio::driver
