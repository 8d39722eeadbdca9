// attention cases: head dims 64, 72 and 80; packed schedules (mixed lengths with an image of 150
// tokens = 3 key tiles of 64, a 1-token image and one shorter than a tile; equal lengths below
// max_seqlen) and the dense one (every image max_seqlen long); two heads; for mma_sm80 both block
// sizes, 4 warps on device 0 (132 SMs) and 8 on device 1 (2 SMs); mma_sm75 always has 8;
// wgmma_sm90a (sm_90 build only) its own list below.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>

#include "attention/attention.h"
#include "emu/driver/case.h"
#include "emu/driver/random.h"
#include "emu/driver/reference.h"
#if defined(FASTRADIO_DRIVER_HOST_TWINS)
#include "attention/attention_host.h"
#endif

namespace fastradio::driver {
namespace {

struct Spec {
  std::vector<int32_t> lens;  // tokens per image
  int64_t max_seqlen;         // == every length: the dense schedule; else packed
  int64_t heads, head_dim;
  int device = 0;
  bool outlier_channels = false;  // two head dims of q and k 8x larger in every token (a ViT's massive activations)
  int64_t nan_row = -1;           // >= 0: this token's q, k and v are NaN (its image's outputs are NaN, no other's)
  bool pingpong = true;           // wgmma_sm90a: false runs with FASTRADIO_SM90A_ATTENTION_PINGPONG=0
};

class AttentionInstance : public Instance {
 public:
  AttentionInstance(const Spec& s, Tier tier, DType dtype, uint64_t seed) : sms_(kDeviceSms[s.device]) {
    cu_.push_back(0);
    for (int32_t len : s.lens) cu_.push_back(cu_.back() + len);
    const int64_t rows = cu_.back();
    Rng rng(seed);
    Buffer& qkv = make(dtype, rows * 3 * s.heads * s.head_dim);
    fill_activations(qkv, rng);
    if (s.outlier_channels) {
      const int64_t width = 3 * s.heads * s.head_dim;
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t part = 0; part < 2 * s.heads; ++part)  // the q and k thirds
          for (int64_t d : {int64_t(3), s.head_dim - 5}) {
            const int64_t i = r * width + part * s.head_dim + d;
            qkv.set(i, 8.0 * qkv.get(i));
          }
    }
    if (s.nan_row >= 0)
      for (int64_t c = 0; c < 3 * s.heads * s.head_dim; ++c)
        qkv.set(s.nan_row * 3 * s.heads * s.head_dim + c, std::numeric_limits<double>::quiet_NaN());
    inputs = {&qkv};
    Buffer& out = make(dtype, rows * s.heads * s.head_dim);
    Expected e = attention_expected(qkv.values(), cu_, s.heads, s.head_dim, dtype);
    Output& o = add_output("out", out);
    o.ref = std::move(e.ref);
    o.floor = std::move(e.floor);

    p_.qkv = qkv.data();
    p_.cu_seqlens = cu_.data();
    p_.out = out.data();
    p_.rows = rows;
    p_.num_seqs = int64_t(s.lens.size());
    p_.max_seqlen = s.max_seqlen;
    p_.num_heads = s.heads;
    p_.head_dim = s.head_dim;
    p_.dtype = dtype;
    p_.tier = tier;
    pingpong_ = s.pingpong;
  }

  Status run() override {
#if defined(FASTRADIO_DRIVER_HOST_TWINS)
    return attention_host(p_, twin_warps());
#else
    if (pingpong_) return attention_fwd(p_, nullptr);
    setenv("FASTRADIO_SM90A_ATTENTION_PINGPONG", "0", 1);
    const Status st = attention_fwd(p_, nullptr);
    unsetenv("FASTRADIO_SM90A_ATTENTION_PINGPONG");
    return st;
#endif
  }

 private:
#if defined(FASTRADIO_DRIVER_HOST_TWINS)
  // The block size the launcher would pick: mma_sm75 always 8 warps; mma_sm80 8 when its grid of
  // 128-query tiles gives at least two blocks per SM, else 4 (attn::mma_warps). cuda_core ignores it.
  int twin_warps() const {
    if (p_.tier != Tier::kMmaSm80) return 8;
    const bool uniform = p_.rows % p_.num_seqs == 0 && p_.rows / p_.num_seqs == p_.max_seqlen;
    const int64_t tiles = uniform ? p_.num_seqs * ((p_.max_seqlen + 127) / 128) : p_.rows / 128 + p_.num_seqs;
    return tiles * p_.num_heads >= 2 * int64_t(sms_) ? 8 : 4;
  }
#endif

  int sms_;
  bool pingpong_ = true;
  std::vector<int32_t> cu_;
  AttentionParams p_;
};

void add(std::vector<Case>& cases, Tier tier, DType dtype, const Spec& s) {
  const bool dense = std::all_of(s.lens.begin(), s.lens.end(), [&](int32_t l) { return l == s.max_seqlen; });
  std::string lens;
  for (int32_t l : s.lens) lens += (lens.empty() ? "l" : "-") + std::to_string(l);
  std::string shape = lens + "_max" + std::to_string(s.max_seqlen) + "_h" + std::to_string(s.heads) + "_dh" +
                      std::to_string(s.head_dim);
  if (tier == Tier::kMmaSm80) shape += "_sms" + std::to_string(kDeviceSms[s.device]);
  if (s.outlier_channels) shape += "_outch";
  if (s.nan_row >= 0) shape += "_nanrow" + std::to_string(s.nan_row);
  if (!s.pingpong) shape += "_nopingpong";
  Case c;
  c.name = case_name("attention", tier, short_name(dtype), dense ? "uniform" : "packed", shape);
  c.op = "attention";
  c.tier = tier;
  c.dtypes = {dtype};
  c.device = s.device;
  c.make = [s, tier, dtype](uint64_t seed) { return std::make_unique<AttentionInstance>(s, tier, dtype, seed); };
  cases.push_back(std::move(c));
}

const Spec kPacked64{{150, 1, 40}, 150, 2, 64};
const Spec kPacked80{{150, 1, 40}, 150, 2, 80};
const Spec kUniform64{{70, 70}, 70, 2, 64};
const Spec kUniform80{{70, 70}, 70, 2, 80};
// Head dim 72 (C-RADIOv4-SO400M): 9 chunks per row, a k8 tail step, an odd number of dim tiles.
const Spec kPacked72{{150, 1, 40}, 150, 2, 72};
const Spec kUniform72{{70, 70}, 70, 2, 72};

Spec on(const Spec& s, int device) {
  Spec r = s;
  r.device = device;
  return r;
}

#if !defined(FASTRADIO_DRIVER_HOST_TWINS) && FASTRADIO_HAS_ATTENTION_WGMMA_SM90A
// wgmma_sm90a (no host twin: emulated device only). 128 query rows per block, K/V tiles of 128 keys
// through 3 stages: 150 tokens = a full and a 22-key tile; 600 = 5 tiles (the stage phases wrap);
// 1000 = 8 tiles (stage 0 used three times: its wait parity returns to 0); 129 = one key in its
// last tile; 128 = exactly one tile; 1-token images; many short ones. The consumers' ping-pong is
// on, except in the last cases (its A/B switch off: each consumer issues on its own).
void add_wgmma_sm90a(std::vector<Case>& cases) {
  for (DType t : {DType::kFloat16, DType::kBFloat16})
    for (int64_t dh : {64, 72, 80}) {
      add(cases, Tier::kWgmmaSm90a, t, Spec{{150, 1, 40}, 150, 2, dh});        // packed
      add(cases, Tier::kWgmmaSm90a, t, Spec{{70, 70}, 70, 2, dh});             // uniform, one partial tile
      add(cases, Tier::kWgmmaSm90a, t, Spec{{200, 200}, 200, 1, dh, 0, true});  // uniform, 2 x 2 tiles, outlier channels
    }
  add(cases, Tier::kWgmmaSm90a, DType::kBFloat16, Spec{{3, 600, 1, 129, 128, 17}, 600, 2, 80, 0, true});
  add(cases, Tier::kWgmmaSm90a, DType::kFloat16, Spec{{1000, 2, 129}, 1000, 1, 72});
  add(cases, Tier::kWgmmaSm90a, DType::kFloat16, Spec{{256, 256, 256}, 256, 2, 64, 0, true});  // uniform, exact tiles
  // A NaN token in the middle image: the first image's last tile reads its rows (TMA boxes do not
  // stop at an image) and must stay finite (the V rows past an image are zeroed before P·V).
  add(cases, Tier::kWgmmaSm90a, DType::kBFloat16, Spec{{100, 50, 70}, 100, 2, 80, 0, false, 110});
  // Many short images (1..24 tokens): many blocks per head find their image by the binary search.
  std::vector<int32_t> many;
  for (int32_t i = 1; i <= 24; ++i) many.push_back(i);
  add(cases, Tier::kWgmmaSm90a, DType::kBFloat16, Spec{many, 24, 2, 64});
  add(cases, Tier::kWgmmaSm90a, DType::kFloat16, Spec{many, 40, 1, 80});
  Spec off{{3, 600, 1, 129, 128, 17}, 600, 2, 72};
  off.pingpong = false;
  add(cases, Tier::kWgmmaSm90a, DType::kFloat16, off);
  off = Spec{{100, 50, 70}, 100, 2, 64, 0, false, 110};
  off.pingpong = false;
  add(cases, Tier::kWgmmaSm90a, DType::kBFloat16, off);
}
#endif

}  // namespace

void add_attention_cases(std::vector<Case>& cases) {
  for (DType t : {DType::kFloat32, DType::kFloat16, DType::kBFloat16}) {
    add(cases, Tier::kCudaCore, t, kPacked64);
    add(cases, Tier::kCudaCore, t, kPacked80);
    add(cases, Tier::kCudaCore, t, kUniform64);
    add(cases, Tier::kCudaCore, t, kUniform80);
    add(cases, Tier::kCudaCore, t, Spec{{70, 33, 70}, 100, 2, 64});  // packed, every image below max_seqlen
    add(cases, Tier::kCudaCore, t, kPacked72);
    add(cases, Tier::kCudaCore, t, kUniform72);
  }
#if defined(FASTRADIO_DRIVER_HOST_TWINS) || FASTRADIO_HAS_ATTENTION_MMA_SM80
  add(cases, Tier::kMmaSm80, DType::kFloat16, kPacked64);             // 4 warps
  add(cases, Tier::kMmaSm80, DType::kFloat16, on(kUniform80, 1));     // 8 warps
  add(cases, Tier::kMmaSm80, DType::kBFloat16, kUniform64);           // 4 warps
  add(cases, Tier::kMmaSm80, DType::kBFloat16, on(kPacked80, 1));     // 8 warps
  add(cases, Tier::kMmaSm80, DType::kFloat16, on(kPacked72, 1));      // 8 warps
  add(cases, Tier::kMmaSm80, DType::kBFloat16, kUniform72);           // 4 warps
#endif
#if defined(FASTRADIO_DRIVER_HOST_TWINS) || FASTRADIO_HAS_ATTENTION_MMA_SM75
  add(cases, Tier::kMmaSm75, DType::kFloat16, kUniform80);
  add(cases, Tier::kMmaSm75, DType::kFloat16, kPacked64);
  add(cases, Tier::kMmaSm75, DType::kFloat16, kPacked72);
#endif
#if !defined(FASTRADIO_DRIVER_HOST_TWINS) && FASTRADIO_HAS_ATTENTION_WGMMA_SM90A
  add_wgmma_sm90a(cases);
#endif
}

}  // namespace fastradio::driver
