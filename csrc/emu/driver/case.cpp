#include "emu/driver/case.h"

#include <set>

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
  for (Case& c : cases) {
    std::string key = c.op + "/" + tier_name(c.tier);
    for (DType t : c.dtypes) key += std::string("/") + short_name(t);
    c.quick = seen.insert(key).second;
  }
  return cases;
}

}  // namespace fastradio::driver
