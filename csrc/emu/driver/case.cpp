#include "emu/driver/case.h"

#include <set>
#include <stdexcept>

#include "add_layer_norm/add_layer_norm.h"
#include "attention/attention.h"
#include "linear/linear.h"
#include "patch_embed/patch_embed.h"

namespace fastradio::driver {

Output& Instance::add_output(const std::string& name, Buffer& buf) {
  outputs.push_back(Output{});
  outputs.back().name = name;
  outputs.back().buf = &buf;
  return outputs.back();
}

std::string case_name(const std::string& op, Tier tier, const std::string& dtype, const std::string& variant,
                      const std::string& shape) {
  return op + "/" + tier_name(tier) + "/" + dtype + "/" + variant + "/" + shape;
}

namespace {

constexpr DType kDTypes[] = {DType::kFloat32, DType::kFloat16, DType::kBFloat16};

std::string key(const std::string& op, Tier tier, const std::vector<DType>& dtypes) {
  std::string k = op + "/" + tier_name(tier);
  for (DType t : dtypes) k += std::string("/") + short_name(t);
  return k;
}

// Whether the op's `tier` takes these dtypes (add_layer_norm: x's and w's), from the headers.
bool takes(const std::string& op, Tier tier, const std::vector<DType>& d) {
  if (op == "add_layer_norm") return tier == Tier::kCudaCore && d.size() == 2 && add_layer_norm_dtypes_supported(d[0], d[1]);
  if (d.size() != 1) return false;
  if (op == "pos_embed") return tier == Tier::kCudaCore;
  if (op == "patch_embed") return patch_embed_tier_takes(tier, d[0]);
  if (op == "linear") return linear_tier_takes(tier, d[0]);
  if (op == "attention") return attention_tier_takes(tier, d[0]);
  return false;
}

// For every (op, tier) registered: each dtype combination the tier takes has a case and no case
// asks for one it refuses. True by construction today; checked so that a change to a header's
// table fails loudly here instead of leaving a combination untested.
void check_coverage(const std::vector<Case>& cases) {
  std::set<std::string> have;
  std::set<std::pair<std::string, Tier>> tiers;
  for (const Case& c : cases) {
    if (!takes(c.op, c.tier, c.dtypes)) throw std::logic_error("case for a combination the op refuses: " + c.name);
    have.insert(key(c.op, c.tier, c.dtypes));
    tiers.insert({c.op, c.tier});
  }
  for (const auto& [op, tier] : tiers) {
    std::vector<std::vector<DType>> combos;
    for (DType a : kDTypes) {
      if (op != "add_layer_norm") combos.push_back({a});
      if (op == "add_layer_norm")
        for (DType b : kDTypes) combos.push_back({a, b});
    }
    for (const auto& d : combos)
      if (takes(op, tier, d) && !have.count(key(op, tier, d))) throw std::logic_error("no case for " + key(op, tier, d));
  }
}

}  // namespace

std::vector<Case> all_cases() {
  std::vector<Case> cases;
  add_pos_embed_cases(cases);
  add_patch_embed_cases(cases);
  add_add_layer_norm_cases(cases);
  add_linear_cases(cases);
  add_attention_cases(cases);
  // The first case of each (op, tier, dtypes) is the --quick one: every combination exactly once,
  // and each op file lists its cheapest broad case first.
  std::set<std::string> seen;
  for (Case& c : cases) c.quick = seen.insert(key(c.op, c.tier, c.dtypes)).second;
  check_coverage(cases);
  return cases;
}

}  // namespace fastradio::driver
