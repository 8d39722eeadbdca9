// The emulated device's Hopper instructions (emu/hopper.h has the model, DESIGN.md "The emulated
// device" / "Hopper" the reasons): mbarriers, TMA tensor copies and their host-side tensor-map
// encoder, wgmma with shared-memory matrix descriptors, setmaxnreg. Written from the PTX ISA
// ("Asynchronous warpgroup level matrix multiply-accumulate", "cp.async.bulk.tensor", "mbarrier")
// and the CUDA driver API's cuTensorMapEncodeTiled, not from common/hopper.h.
#include <cuda.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <deque>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "emu/control.h"
#include "emu/device.h"
#include "emu/fiber.h"
#include "emu/hopper.h"
#include "emu/hopper_rt.h"

namespace fastradio {
namespace emu {
namespace {

// The emulator's own bookkeeping is not the kernel's: TSan must not check it.
struct Quiet {
  Quiet() { tsan_ignore_begin(); }
  ~Quiet() { tsan_ignore_end(); }
};

struct Landing {
  char* dst;
  uint32_t window;  // dst's shared address
  std::vector<unsigned char> bytes;  // already swizzled / zero-filled: what the box's span holds
  const char* file;  // the cp.async.bulk.tensor that issued it
  int line;
};

// A thread's arrival on an mbarrier while wgmmas it issued were still in flight for it (it had not
// retired them with its own wait_group). Carried with the phase to the threads that wait on it: a TMA
// load such a thread then issues into those wgmmas' operands, while the arriving thread still has them
// in flight, is a stage released before its readers retired (caught even when another thread of the
// warpgroup happened to retire the wgmma first, which ends the operand hold of Held below).
struct Released {
  uint64_t op;      // the wgmma instruction (Block::ops)
  unsigned thread;  // who arrived with it in flight
  const char* file;  // the mbarrier.arrive
  int line;
};

struct Mbar {
  std::vector<Released> releasing;  // arrivals of the current phase
  std::vector<Released> released;   // those of the last completed phase (what a wait that returns acquires)
  uint32_t expected = 0;  // arrivals per phase
  uint32_t pending = 0;   // arrivals still missing in the current phase
  int64_t tx = 0;         // transaction bytes expected and not yet completed
  uint32_t phase = 0;     // completed phases
  std::vector<Landing> copies;
  const char* file = "";
  int line = 0;
};

struct Result {
  float* d;
  std::vector<float> v;
  uint64_t op;  // the wgmma instruction (Block::held) that computed it
  const char* file;  // its wgmma.mma_async
  int line;
};
struct ThreadWgmma {
  bool fenced = false;
  std::vector<Result> open;                 // issued since the last commit
  std::deque<std::vector<Result>> groups;   // committed, oldest first
};

// The shared-memory operands of one wgmma.mma_async between its issue and its retirement.
//
// On a GPU the tensor cores may read A and B from shared memory at any time until the
// wgmma.wait_group that retires the instruction's group; the emulator reads them at issue. So
// that a kernel which lets its operands change in that window (a stage released to the producer
// one wait_group too early) is still caught, each wgmma keeps, until its retirement, the bytes
// it read (window ranges) and their contents as both proxies saw them at issue:
//   - writes the emulator performs itself are checked as they happen, naming the writer: a TMA
//     load issued into a held range (tma_load), a TMA load issued earlier whose bytes land there
//     (the mbarrier wait: the wgmma did not wait for its phase), stmatrix (shared_write_check);
//   - ordinary stores (plain C++ assignments the emulator does not see) are caught when the
//     instruction retires: the held ranges are compared with the copies taken at issue, in the
//     generic view (the stores themselves) and in the async proxy's (what fence.proxy.async
//     published).
// Why this design: it costs one copy of the operand bytes at issue and one comparison at
// retirement, of the same order as the wgmma's own operand reads and far below its 64 x N x 16
// products; the write-time checks cost a scan of the held ranges per TMA load or stmatrix, and
// nothing when no wgmma is in flight. Comparing contents (rather than trapping every store) misses
// only a store that writes back the value it found (A -> B -> A), which cannot change the result.
// It is sound: a write reported while no thread has retired the wgmma cannot be ordered after the
// retirement on any schedule. A wgmma is one operation of its warpgroup: the first thread of the
// warpgroup whose wait_group retires it ends its reads (kernels release a stage after one elected
// thread's wait_group, as linear_sm90a does), so later threads' waits check nothing more. Hence
// not caught: a store made after another thread of the warpgroup retired the wgmma but before the
// storing thread's own wait_group (no happens-before relation is kept to tell whether the store
// follows that retirement). A stage released by such a thread is caught by Released instead.
// RS operands (A in registers) are not held: the registers are copied at issue, and the PTX rule
// that they stay unchanged until retirement concerns PTX registers, which C++ source does not
// name (a kernel that reuses its fragment array for the next k-step, as the self-test's RS kernel
// does, gets separate registers or a serialised pipeline from ptxas), so a check through the
// array's address would reject correct kernels.
struct HeldRange {
  uint32_t lo, hi;  // window addresses [lo, hi)
};
struct Held {
  std::vector<HeldRange> ranges;  // sorted, disjoint
  uint32_t lo = 0, hi = 0;        // their hull (a quick rejection)
  std::vector<char> generic;      // the ranges' bytes at issue, concatenated: ordinary loads' view
  std::vector<char> async;        // the async proxy's view (what the wgmma read)
  unsigned warpgroup = 0;
  const char* file = "";  // the wgmma.mma_async
  int line = 0;
};

struct Block {
  std::map<uint32_t, Mbar> bars;  // by shared address
  std::map<uint64_t, Held> held;  // wgmma instructions in flight (no thread retired them yet), by issue order
  uint64_t next_op = 0;
  // The async proxy's view of each shared buffer (by window start): what TMA stores and wgmma read.
  // Ordinary stores reach it only through fence.proxy.async; TMA loads land in both.
  std::map<uint32_t, std::vector<char>> async_view;
  std::vector<ThreadWgmma> wgmma;
  // Every wgmma's operand ranges and call site, by id, for the block's life (Released checks).
  struct Op {
    std::vector<HeldRange> ranges;
    const char* file;
    int line;
  };
  std::map<uint64_t, Op> ops;
  std::map<unsigned, std::vector<Released>> inherited;  // per thread: what the phases it waited on carried
  unsigned nthreads = 0;
};
Block g_block;

// Whether a result of thread t still in flight (issued, not retired by its wait_group) satisfies pred.
template <class Pred>
bool any_in_flight(const ThreadWgmma& t, Pred pred) {
  for (const Result& r : t.open)
    if (pred(r)) return true;
  for (const auto& g : t.groups)
    for (const Result& r : g)
      if (pred(r)) return true;
  return false;
}

// The wgmma state of thread `linear`, created on the block's first wgmma instruction (most blocks
// never use one, and the emulator starts thousands of them).
ThreadWgmma& wgmma_state(unsigned linear) {
  if (g_block.wgmma.empty()) g_block.wgmma.resize(g_block.nthreads);
  return g_block.wgmma[linear];
}

std::string format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string format(const char* fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  return buf;
}

Mbar* find_bar(void* bar, const char* what, const char* file, int line) {
  if (reinterpret_cast<uintptr_t>(bar) % 8 != 0) fault(file, line, "%s on %p, which is not 8-byte aligned", what, bar);
  const uint32_t addr = shared_window_address(bar, 8, file, line);
  Quiet q;
  auto it = g_block.bars.find(addr);
  if (it == g_block.bars.end())
    fault(file, line, "%s on the mbarrier at shared address 0x%x, which no thread has initialised", what, addr);
  return &it->second;
}

void complete_phase(Mbar* m) {
  m->released = std::move(m->releasing);
  m->releasing.clear();
  ++m->phase;
  m->pending = m->expected;
  m->tx = 0;
  hb_release(m);
  block_wake(m);
}

// The async proxy's bytes at [addr, addr + bytes), or nullptr outside shared memory. A buffer's view
// starts as the block's initial 0xFF. With `record` set, the ranges asked for are appended to it
// (adjacent ones merged): what a wgmma's operands read.
struct AsyncView {
  std::vector<SharedSpan> spans = shared_spans();
  std::vector<HeldRange>* record = nullptr;
  char* at(uint32_t addr, size_t bytes) {
    if (record != nullptr) {
      if (!record->empty() && record->back().hi == addr) {
        record->back().hi = uint32_t(addr + bytes);
      } else {
        record->push_back({addr, uint32_t(addr + bytes)});
      }
    }
    for (const SharedSpan& s : spans)
      if (addr >= s.window && uint64_t(addr) + bytes <= uint64_t(s.window) + s.bytes) {
        std::vector<char>& v = g_block.async_view[s.window];
        if (v.size() != s.bytes) v.assign(s.bytes, char(0xff));
        return v.data() + (addr - s.window);
      }
    return nullptr;
  }
};

// Visits the window bytes of `ranges` (every byte inside a shared buffer: they come from
// AsyncView::at) piece by piece, one piece per range and buffer: fn(offset of the piece in the
// ranges' concatenation, its window address, its bytes as ordinary loads see them, as the async
// proxy sees them, its length).
template <class F>
void visit_ranges(AsyncView& view, const std::vector<HeldRange>& ranges, F fn) {
  std::vector<char*> async(view.spans.size(), nullptr);  // each buffer's async view, looked up once
  size_t pos = 0;
  for (const HeldRange& x : ranges) {
    for (size_t i = 0; i < view.spans.size(); ++i) {
      const SharedSpan& s = view.spans[i];
      const uint64_t a = std::max<uint64_t>(x.lo, s.window), b = std::min<uint64_t>(x.hi, uint64_t(s.window) + s.bytes);
      if (a >= b) continue;
      if (async[i] == nullptr) async[i] = view.at(s.window, s.bytes);
      fn(pos + size_t(a - x.lo), uint32_t(a), s.p + (a - s.window), async[i] + (a - s.window), size_t(b - a));
    }
    pos += x.hi - x.lo;
  }
}

// The first held wgmma (oldest first) whose operands overlap the window bytes [lo, hi), with the first
// overlapping address in *at; nullptr if none.
const Held* held_overlap(uint32_t lo, uint32_t hi, uint32_t* at) {
  for (const auto& [op, h] : g_block.held) {
    if (hi <= h.lo || lo >= h.hi) continue;
    auto r = std::upper_bound(h.ranges.begin(), h.ranges.end(), lo,
                              [](uint32_t a, const HeldRange& x) { return a < x.hi; });  // first range ending past lo
    if (r != h.ranges.end() && r->lo < hi) {
      *at = std::max(lo, r->lo);
      return &h;
    }
  }
  return nullptr;
}

// The message of a write into a held operand (why[0..n)), or false. what: the writer, in words.
bool held_write(uint32_t lo, uint32_t hi, const char* what, char* why, size_t n) {
  uint32_t at = 0;
  const Held* h = held_overlap(lo, hi, &at);
  if (h == nullptr) return false;
  snprintf(why, n,
           "the shared-memory operand of a wgmma issued at %s:%d changed before wait_group retired it: %s shared "
           "address 0x%x, which that wgmma (warpgroup %u) may still read",
           h->file, h->line, what, at, h->warpgroup);
  return true;
}

// --- tensor maps: what the emulator's encoder keeps in the 128 opaque bytes ----------------------------
constexpr uint64_t kMapMagic = 0x31304d54554d4546ull;  // "FEMUTM01"
struct MapView {
  int rank;
  int esize;
  int swizzle;  // bytes: 0, 32, 64, 128
  bool nan_fill;
  bool is_float;
  char* base;
  uint64_t dim[5];
  uint64_t stride[5];  // bytes; stride[0] = esize
  uint32_t box[5];
};
void pack(CUtensorMap* m, const MapView& v) {
  std::memset(m, 0, sizeof(*m));
  m->opaque[0] = kMapMagic;
  m->opaque[1] = reinterpret_cast<uint64_t>(v.base);
  m->opaque[2] = uint64_t(v.rank) | uint64_t(v.esize) << 8 | uint64_t(v.swizzle) << 16 | uint64_t(v.nan_fill) << 32 |
                 uint64_t(v.is_float) << 33;
  for (int i = 0; i < 5; ++i) {
    m->opaque[3 + i] = v.dim[i];
    m->opaque[8 + i] = v.stride[i];
  }
  for (int i = 0; i < 5; ++i) m->opaque[13 + i / 4] |= uint64_t(v.box[i]) << (16 * (i % 4));
}
MapView unpack(const CUtensorMap* m, const char* file, int line) {
  if (m == nullptr || reinterpret_cast<uintptr_t>(m) % 64 != 0)
    fault(file, line, "tensor map %p is not 64-byte aligned", static_cast<const void*>(m));
  if (m->opaque[0] != kMapMagic)
    fault(file, line, "tensor map %p was not made by cuTensorMapEncodeTiled", static_cast<const void*>(m));
  MapView v;
  v.base = reinterpret_cast<char*>(m->opaque[1]);
  v.rank = int(m->opaque[2] & 0xff);
  v.esize = int(m->opaque[2] >> 8 & 0xff);
  v.swizzle = int(m->opaque[2] >> 16 & 0xffff);
  v.nan_fill = (m->opaque[2] >> 32 & 1) != 0;
  v.is_float = (m->opaque[2] >> 33 & 1) != 0;
  for (int i = 0; i < 5; ++i) {
    v.dim[i] = m->opaque[3 + i];
    v.stride[i] = m->opaque[8 + i];
    v.box[i] = uint32_t(m->opaque[13 + i / 4] >> (16 * (i % 4)) & 0xffff);
  }
  return v;
}

// TMA / wgmma swizzle (PTX ISA "Tensor swizzling modes"): within each 16-byte chunk index of a
// `span`-byte row, bits [4, 4 + log2(span / 16)) of the shared address are XORed with the bits
// three above them, i.e. with the row index in the 8-row repeat.
uint32_t swizzle(uint32_t addr, int span) {
  if (span == 0) return addr;
  const uint32_t mask = uint32_t(span / 16 - 1);
  return addr ^ (((addr >> 7) & mask) << 4);
}

std::string g_map_error;

CUresult encode_tiled(CUtensorMap* map, CUtensorMapDataType type, cuuint32_t rank, void* address, const cuuint64_t* dim,
                      const cuuint64_t* strides, const cuuint32_t* box, const cuuint32_t* elem_strides,
                      CUtensorMapInterleave interleave, CUtensorMapSwizzle swz, CUtensorMapL2promotion,
                      CUtensorMapFloatOOBfill fill) {
  auto refuse = [](std::string why) {
    g_map_error = why;
    std::fprintf(stderr, "[emu] cuTensorMapEncodeTiled: %s\n", why.c_str());
    return CUDA_ERROR_INVALID_VALUE;
  };
  static const int kSize[] = {1, 2, 4, 4, 8, 8, 2, 4, 8, 2, 4, 4, 4};
  if (map == nullptr || reinterpret_cast<uintptr_t>(map) % 64 != 0)
    return refuse(format("tensorMap %p must be 64-byte aligned", static_cast<void*>(map)));
  if (int(type) < 0 || int(type) > 12) return refuse(format("unknown data type %d", int(type)));
  if (rank < 1 || rank > 5) return refuse(format("rank %u, expected 1..5", rank));
  if (interleave != CU_TENSOR_MAP_INTERLEAVE_NONE)
    return refuse("interleaved layouts are not emulated (expected CU_TENSOR_MAP_INTERLEAVE_NONE)");
  if (reinterpret_cast<uintptr_t>(address) % 16 != 0)
    return refuse(format("globalAddress %p must be 16-byte aligned", address));
  MapView v{};
  v.rank = int(rank);
  v.esize = kSize[type];
  v.base = static_cast<char*>(address);
  v.is_float = type >= CU_TENSOR_MAP_DATA_TYPE_FLOAT16;
  v.nan_fill = fill == CU_TENSOR_MAP_FLOAT_OOB_FILL_NAN_REQUEST_ZERO_FMA;
  if (v.nan_fill && !v.is_float) return refuse("NaN out-of-bounds fill needs a floating-point data type");
  v.stride[0] = uint64_t(v.esize);
  for (unsigned i = 0; i < rank; ++i) {
    if (dim[i] == 0 || dim[i] > (uint64_t(1) << 32))
      return refuse(format("globalDim[%u] = %llu, expected 1..2^32", i, (unsigned long long)dim[i]));
    v.dim[i] = dim[i];
    if (box[i] == 0 || box[i] > 256) return refuse(format("boxDim[%u] = %u, expected 1..256", i, box[i]));
    v.box[i] = box[i];
    if (elem_strides[i] != 1)
      return refuse(format("elementStrides[%u] = %u: only 1 is emulated", i, elem_strides[i]));
    if (i > 0) {
      const uint64_t s = strides[i - 1];
      if (s % 16 != 0 || s >= (uint64_t(1) << 40))
        return refuse(format("globalStrides[%u] = %llu bytes, expected a multiple of 16 below 2^40", i - 1,
                             (unsigned long long)s));
      v.stride[i] = s;
    }
  }
  const uint64_t inner = uint64_t(box[0]) * v.esize;
  if (inner % 16 != 0)
    return refuse(format("boxDim[0] * element size = %llu bytes, expected a multiple of 16", (unsigned long long)inner));
  static const int kSpan[] = {0, 32, 64, 128};
  if (int(swz) < 0 || int(swz) > 3) return refuse(format("unknown swizzle %d", int(swz)));
  v.swizzle = kSpan[swz];
  if (v.swizzle != 0 && inner > uint64_t(v.swizzle))
    return refuse(format("boxDim[0] * element size = %llu bytes exceeds the %d-byte swizzle span",
                         (unsigned long long)inner, v.swizzle));
  pack(map, v);
  g_map_error.clear();
  return CUDA_SUCCESS;
}

// What a cp.async.bulk.tensor of `rank` dimensions checks before copying, loads and stores alike:
// the tensor map (the emulator's encoder made it) and its rank, the 128-byte aligned shared box
// (`role`: destination or source), its size in bytes and its window address (the whole box in one
// shared buffer).
struct TmaBox {
  MapView map;
  uint64_t bytes;
  uint32_t window;
};
TmaBox tma_box(const CUtensorMap* map, int rank, const void* smem, const char* role, const char* file, int line) {
  TmaBox b{unpack(map, file, line), 0, 0};
  if (b.map.rank != rank) fault(file, line, "cp.async.bulk.tensor.%dd with a rank-%d tensor map", rank, b.map.rank);
  if (reinterpret_cast<uintptr_t>(smem) % 128 != 0)
    fault(file, line, "cp.async.bulk.tensor %s %p is not 128-byte aligned", role, smem);
  b.bytes = uint64_t(b.map.esize);
  for (int d = 0; d < rank; ++d) b.bytes *= b.map.box[d];
  b.window = shared_window_address(smem, b.bytes, file, line);
  return b;
}

// Visits every element of the box at `coords`: fn(dst_offset, src or nullptr when out of bounds).
template <class F>
void for_box(const MapView& v, const int* coords, F fn) {
  uint64_t count = 1;
  for (int d = 0; d < v.rank; ++d) count *= v.box[d];
  for (uint64_t e = 0; e < count; ++e) {
    uint64_t rest = e;
    bool inside = true;
    uint64_t src = 0;
    for (int d = 0; d < v.rank; ++d) {
      const int64_t g = int64_t(coords[d]) + int64_t(rest % v.box[d]);
      rest /= v.box[d];
      if (g < 0 || uint64_t(g) >= v.dim[d]) inside = false;
      src += uint64_t(g) * v.stride[d];
    }
    fn(e * uint64_t(v.esize), inside ? v.base + src : nullptr);
  }
}

// --- wgmma ------------------------------------------------------------------------------------------------
float half_value(uint16_t h, bool bf16) {
  if (bf16) {
    const uint32_t u = uint32_t(h) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
  const int e = h >> 10 & 0x1f, m = h & 0x3ff;
  const float s = h & 0x8000 ? -1.0f : 1.0f;
  if (e == 0x1f) return m ? std::numeric_limits<float>::quiet_NaN() : s * INFINITY;
  if (e == 0) return s * std::ldexp(float(m), -24);
  return s * std::ldexp(float(m + 1024), e - 25);
}

// Element (row, k) of a K-major 16-bit operand described by `desc` (PTX ISA "Matrix Descriptor
// Format" and the canonical K-major layouts): bits 0-13 start address >> 4, 16-29 leading byte
// offset >> 4 (between core matrices along K; unused when swizzled), 32-45 stride byte offset
// >> 4 (between 8-row groups), 49-51 base offset, 62-63 swizzle (0 none, 1 128 B, 2 64 B, 3 32 B).
// Unswizzled, a core matrix is 8 rows x 16 bytes, contiguous; swizzled, row r of an 8-row group
// is `span` bytes at r * span, and the swizzle permutes its 16-byte chunks.
//
// MN-major (B with the transpose flag; PTX ISA "Shared Memory Matrix Layout", the MN-major
// swizzled canonical layouts): the roles of the two dimensions swap. A k-row holds span / 2
// consecutive N values (span bytes); the 8 k-rows of an atom are `span` bytes apart; atoms are
// sbo apart along K (the next 8 k-rows) and lbo apart along N (the next span / 2 values); the
// same address swizzle. The unswizzled MN-major layout is not emulated (a fault says so).
float operand(AsyncView& view, uint64_t desc, int row, int k, bool bf16, bool mn_major, const char* which,
              const char* file, int line) {
  const uint32_t start = uint32_t(desc & 0x3fff) << 4;
  const uint32_t lbo = uint32_t(desc >> 16 & 0x3fff) << 4;
  const uint32_t sbo = uint32_t(desc >> 32 & 0x3fff) << 4;
  static const int kSpan[] = {0, 128, 64, 32};
  const int span = kSpan[desc >> 62];
  if ((desc >> 49 & 7) != 0) fault(file, line, "wgmma %s descriptor has a base offset (not emulated)", which);
  uint32_t addr;
  if (mn_major) {
    if (span == 0) fault(file, line, "wgmma %s: an unswizzled MN-major operand (not emulated)", which);
    const int per_row = span / 2;  // 16-bit values along N in one swizzle span
    addr = swizzle(start + uint32_t(row / per_row) * lbo + uint32_t(k / 8) * sbo + uint32_t(k % 8) * span +
                       uint32_t(row % per_row) * 2,
                   span);
  } else if (span == 0) {
    addr = start + uint32_t(row / 8) * sbo + uint32_t(k / 8) * lbo + uint32_t(row % 8) * 16 + uint32_t(k % 8) * 2;
  } else {
    addr = swizzle(start + uint32_t(row / 8) * sbo + uint32_t(row % 8) * span + uint32_t(k) * 2, span);
  }
  const char* p = view.at(addr, 2);
  if (p == nullptr)
    fault(file, line, "wgmma %s descriptor 0x%016llx: element (%d, %d) at shared address 0x%x is outside shared memory",
          which, (unsigned long long)desc, row, k, addr);
  uint16_t h;
  std::memcpy(&h, p, 2);
  return half_value(h, bf16);
}

// Keeps the operand ranges a wgmma read (merged) with their contents in both views; returns its id.
uint64_t hold_operands(AsyncView& view, Held&& held, unsigned warpgroup, const char* file, int line) {
  std::vector<HeldRange>& r = held.ranges;
  std::sort(r.begin(), r.end(), [](const HeldRange& a, const HeldRange& b) { return a.lo < b.lo; });
  size_t k = 0;
  for (size_t i = 0; i < r.size(); ++i) {
    if (k > 0 && r[i].lo <= r[k - 1].hi) {
      r[k - 1].hi = std::max(r[k - 1].hi, r[i].hi);
    } else {
      r[k++] = r[i];
    }
  }
  r.resize(k);
  if (k > 0) {
    held.lo = r.front().lo;
    held.hi = r.back().hi;
  }
  size_t total = 0;
  for (const HeldRange& x : r) total += x.hi - x.lo;
  held.generic.resize(total);
  held.async.resize(total);
  visit_ranges(view, r, [&](size_t pos, uint32_t, const char* generic, const char* async, size_t n) {
    std::memcpy(held.generic.data() + pos, generic, n);
    std::memcpy(held.async.data() + pos, async, n);
  });
  held.warpgroup = warpgroup;
  held.file = file;
  held.line = line;
  const uint64_t op = g_block.next_op++;
  g_block.ops[op] = Block::Op{r, file, line};
  g_block.held.emplace(op, std::move(held));
  return op;
}

// Whether the held operand bytes still are what the wgmma read at issue; if not, the message in why[0..n).
bool held_changed(const Held& h, char* why, size_t n) {
  bool changed = false, in_async = false;
  uint32_t addr = 0;
  unsigned char was = 0, now = 0;
  {
    AsyncView view;  // (its vector is gone before the caller faults: the fiber is abandoned, never unwound)
    visit_ranges(view, h.ranges, [&](size_t pos, uint32_t window, const char* generic, const char* async, size_t len) {
      for (int view_async = 1; view_async >= 0 && !changed; --view_async) {
        const char* cur = view_async ? async : generic;
        const char* old = (view_async ? h.async : h.generic).data() + pos;
        if (std::memcmp(cur, old, len) == 0) continue;
        size_t i = 0;
        while (cur[i] == old[i]) ++i;
        changed = true;
        in_async = view_async != 0;
        addr = window + uint32_t(i);
        was = (unsigned char)old[i];
        now = (unsigned char)cur[i];
      }
    });
  }
  if (changed) {
    snprintf(why, n,
             "the shared-memory operand of a wgmma issued at %s:%d changed before wait_group retired it: the byte at "
             "shared address 0x%x was 0x%02x at issue and is 0x%02x %s at this wgmma.wait_group, the first of warpgroup "
             "%u to retire it (an ordinary store%s; the emulator sees plain stores only by their effect, so it cannot "
             "name the line)",
             h.file, h.line, addr, unsigned(was), unsigned(now), in_async ? "in the async proxy's view" : "to ordinary loads",
             h.warpgroup, in_async ? ", published by fence.proxy.async" : "");
  }
  return changed;
}

thread_local const char* g_wg_file = "";  // the call site, for faults inside the rendezvous
thread_local int g_wg_line = 0;

// The last thread of the warpgroup to arrive computes every thread's D (PTX ISA "wgmma m64nNk16
// register fragments"; thread t of the warpgroup, warp w = t / 32, g = t % 32 / 4, q = t % 4):
//   D: register 4i + 2h + c holds D[16w + g + 8h][8i + 2q + c]
//   A (RS): register j holds A[16w + g + 8 (j % 2)][2q + 8 (j / 2) + {0, 1}]
void wgmma_compute(void* const* records) {
  const WgmmaCall& c0 = *static_cast<const WgmmaCall*>(records[0]);
  const char* file = g_wg_file;
  const int line = g_wg_line;
  for (int t = 1; t < 128; ++t) {
    const WgmmaCall& c = *static_cast<const WgmmaCall*>(records[t]);
    if (c.regs != c0.regs || c.bf16 != c0.bf16 || c.a_in_regs != c0.a_in_regs || c.desc_b != c0.desc_b ||
        (!c.a_in_regs && c.desc_a != c0.desc_a) || c.accumulate != c0.accumulate || c.trans_b != c0.trans_b)
      fault(file, line, "wgmma.mma_async: thread %d of the warpgroup passes other operands than thread 0", t);
  }
  const int n = 2 * c0.regs;
  const unsigned base = thread_linear() / 128 * 128;
  float A[64][16];
  std::vector<float> B(size_t(n) * 16);
  AsyncView view;
  Held held;  // the shared-memory bytes this instruction reads, kept until it retires (see Held)
  view.record = &held.ranges;
  for (int r = 0; r < 64; ++r)
    for (int k = 0; k < 16; ++k) {
      if (c0.a_in_regs) {
        const int w = r / 16, g = r % 8, h = r % 16 / 8, q = k % 8 / 2, j = h + 2 * (k / 8);
        const uint32_t reg = static_cast<const WgmmaCall*>(records[32 * w + 4 * g + q])->a[j];
        A[r][k] = half_value(uint16_t(k % 2 ? reg >> 16 : reg & 0xffff), c0.bf16);
      } else {
        A[r][k] = operand(view, c0.desc_a, r, k, c0.bf16, false, "A", file, line);
      }
    }
  for (int r = 0; r < n; ++r)
    for (int k = 0; k < 16; ++k) B[size_t(r) * 16 + k] = operand(view, c0.desc_b, r, k, c0.bf16, c0.trans_b, "B", file, line);
  view.record = nullptr;
  const uint64_t op = hold_operands(view, std::move(held), base / 128, file, line);
  for (int t = 0; t < 128; ++t) {
    const WgmmaCall& c = *static_cast<const WgmmaCall*>(records[t]);
    ThreadWgmma& tw = wgmma_state(base + t);
    // The input D: a pending result for these registers (wgmmas on one accumulator are ordered), else the registers.
    const std::vector<float>* prior = nullptr;
    for (const Result& r : tw.open)
      if (r.d == c.d) prior = &r.v;
    if (prior == nullptr)
      for (const auto& g : tw.groups)
        for (const Result& r : g)
          if (r.d == c.d) prior = &r.v;
    const int w = t / 32, g = t % 32 / 4, q = t % 4;
    Result res{c.d, std::vector<float>(size_t(c.regs)), op, file, line};
    for (int e = 0; e < c.regs; ++e) {
      const int row = 16 * w + g + 8 * (e % 4 / 2), col = 8 * (e / 4) + 2 * q + e % 2;
      double s = c.accumulate ? double(prior ? (*prior)[size_t(e)] : c.d[e]) : 0.0;
      // Products exact in double, one rounding (not the tensor cores' bit pattern; see mma.sync).
      for (int k = 0; k < 16; ++k) s += double(A[row][k]) * double(B[size_t(col) * 16 + k]);
      res.v[size_t(e)] = float(s);
    }
    tw.open.push_back(std::move(res));
  }
}

void setmaxnreg_check(void* const* records) {
  const int first = *static_cast<const int*>(records[0]);
  for (int t = 32; t < 128; t += 32)
    if (*static_cast<const int*>(records[t]) != first)
      fault(g_wg_file, g_wg_line, "setmaxnreg: warp %d of the warpgroup asks for %d registers, warp 0 for %d", t / 32,
            *static_cast<const int*>(records[t]), first);
}

}  // namespace

// --- hopper_rt.h ---------------------------------------------------------------------------------------------
void hopper_block_begin(unsigned nthreads) {
  Quiet q;
  g_block.bars.clear();
  g_block.async_view.clear();
  g_block.wgmma.clear();
  g_block.held.clear();
  g_block.ops.clear();
  g_block.inherited.clear();
  g_block.next_op = 0;
  g_block.nthreads = nthreads;
}

bool hopper_thread_exit(unsigned linear, char* why, size_t n) {
  Quiet q;
  if (g_block.wgmma.empty()) return false;
  const ThreadWgmma& t = g_block.wgmma[linear];
  size_t pending = t.open.size();
  for (const auto& g : t.groups) pending += g.size();
  if (pending == 0) return false;
  snprintf(why, n, "the thread exits with %zu wgmma results never waited for (wgmma.wait_group)", pending);
  return true;
}

std::string hopper_block_end() {
  Quiet q;
  for (const auto& [addr, m] : g_block.bars)
    if (!m.copies.empty())
      return format("%zu tensor copies into shared memory never completed: no thread waited on the mbarrier at shared "
                    "address 0x%x (initialised at %s:%d) after they were issued",
                    m.copies.size(), addr, m.file, m.line);
  return "";
}

// --- emu/hopper.h ---------------------------------------------------------------------------------------------
uint32_t shared_address_of(const void* p, const char* file, int line) { return shared_window_address(p, 1, file, line); }

void mbar_init(void* bar, unsigned count, const char* file, int line) {
  if (reinterpret_cast<uintptr_t>(bar) % 8 != 0) fault(file, line, "mbarrier.init on %p, which is not 8-byte aligned", bar);
  const uint32_t addr = shared_window_address(bar, 8, file, line);
  if (count < 1 || count > (1u << 20) - 1) fault(file, line, "mbarrier.init with count %u, expected 1..2^20-1", count);
  store_u64(bar, 0);  // the object's own bytes: the thread's store
  Quiet q;
  Mbar& m = g_block.bars[addr];
  if (!m.copies.empty()) fault(file, line, "mbarrier.init on a barrier with tensor copies in flight");
  m = Mbar{};
  m.expected = m.pending = count;
  m.file = file;
  m.line = line;
  hb_release(&m);
}

uint64_t mbar_arrive(void* bar, uint32_t tx_bytes, const char* file, int line) {
  Mbar* m = find_bar(bar, tx_bytes ? "mbarrier.arrive.expect_tx" : "mbarrier.arrive", file, line);
  uint64_t state;
  bool released = false;
  {
    Quiet q;
    state = m->phase;
    if (m->pending == 0) fault(file, line, "mbarrier.arrive on a phase that already has all its arrivals");
    hb_release(m);
    if (!g_block.wgmma.empty()) {  // the wgmmas still in flight for this thread travel with the phase
      const unsigned me = thread_linear();
      const ThreadWgmma& t = g_block.wgmma[me];
      any_in_flight(t, [&](const Result& r) {
        for (const Released& x : m->releasing)
          if (x.op == r.op && x.thread == me) return false;
        m->releasing.push_back(Released{r.op, me, file, line});
        return false;  // (visit them all)
      });
    }
    m->tx += tx_bytes;
    if (--m->pending == 0) {
      if (m->tx == 0 && m->copies.empty()) {
        complete_phase(m);
        released = true;
      } else {
        block_wake(m);  // a waiter lands the copies
        released = !m->copies.empty();  // (an expect_tx ahead of its copies releases no one yet)
      }
    }
  }
  // The last arrival of a phase releases its waiters: one of them runs before this thread (and the rest
  // of its warpgroup) goes on, as a GPU may order them. So a kernel that arrives too early (frees a
  // pipeline stage before the wgmma reading it retired) meets the waiter's next step (the producer's TMA
  // refill of that stage) while its own work is still in flight.
  if (released) block_yield_to(m);
  return state;
}

void mbar_wait(void* bar, uint32_t parity, const char* file, int line) {
  if (parity > 1) fault(file, line, "mbarrier.try_wait.parity with parity %u, expected 0 or 1", parity);
  for (;;) {
    Mbar* m = find_bar(bar, "mbarrier.try_wait.parity", file, line);
    std::vector<Landing> land;
    {
      Quiet q;
      if ((m->phase & 1) != parity) break;
      if (m->pending == 0 && !m->copies.empty()) land.swap(m->copies);
    }
    if (land.empty()) {
      block_wait(m, "an mbarrier phase", file, line);
      continue;
    }
    // The tensor copies complete: the bytes land, then their transaction count. The landing is the async
    // proxy's, not this thread's: TSan does not see it (a thread that reads the box without waiting gets the
    // poison instead; the happens-before edges through the barrier order the readers after the phase).
    Quiet q;
    {
      char why[1024];
      for (const Landing& l : land) {
        char what[256];
        snprintf(what, sizeof(what),
                 "the cp.async.bulk.tensor issued at %s:%d before that wgmma (whose issuer did not wait for its "
                 "mbarrier phase) lands at this mbarrier wait on",
                 l.file, l.line);
        if (held_write(l.window, uint32_t(l.window + l.bytes.size()), what, why, sizeof(why))) {
          std::vector<Landing>().swap(land);  // before the fault abandons this frame
          fault(file, line, "%s", why);
        }
      }
    }
    int64_t bytes = 0;
    AsyncView view;
    for (Landing& l : land) {
      std::memcpy(l.dst, l.bytes.data(), l.bytes.size());
      std::memcpy(view.at(l.window, l.bytes.size()), l.bytes.data(), l.bytes.size());
      bytes += int64_t(l.bytes.size());
    }
    m->tx -= bytes;
    std::vector<Landing>().swap(land);  // before a fault abandons this frame
    if (m->tx < 0)
      fault(file, line, "tensor copies completed %lld bytes more than the mbarrier's expect_tx announced",
            (long long)-m->tx);
    if (m->tx == 0) complete_phase(m);
  }
  Mbar* m = find_bar(bar, "mbarrier.try_wait.parity", file, line);
  {
    Quiet q;
    if (!m->released.empty()) {  // the wait returns on the last completed phase
      std::vector<Released>& mine = g_block.inherited[thread_linear()];
      mine.insert(mine.end(), m->released.begin(), m->released.end());
    }
  }
  hb_acquire(m);
}

// A TMA load into [lo, hi) by the running thread: a wgmma operand there that a phase it waited on
// released while the arriving thread still had that wgmma in flight (Released).
static bool released_early(uint32_t lo, uint32_t hi, char* why, size_t n) {
  auto it = g_block.inherited.find(thread_linear());
  if (it == g_block.inherited.end()) return false;
  std::vector<Released>& v = it->second;
  for (size_t i = 0; i < v.size();) {
    const Released& x = v[i];
    const bool pending = x.thread < g_block.wgmma.size() &&
                         any_in_flight(g_block.wgmma[x.thread], [&](const Result& r) { return r.op == x.op; });
    if (!pending) {  // retired by its thread since: nothing to check any more
      v.erase(v.begin() + long(i));
      continue;
    }
    const Block::Op& op = g_block.ops.at(x.op);
    for (const HeldRange& r : op.ranges)
      if (r.lo < hi && lo < r.hi) {
        snprintf(why, n,
                 "this cp.async.bulk.tensor writes shared address 0x%x, an operand of the wgmma.mma_async at %s:%d, "
                 "whose stage thread %u released (mbarrier.arrive at %s:%d) before its own wgmma.wait_group retired "
                 "that wgmma",
                 std::max(lo, r.lo), op.file, op.line, x.thread, x.file, x.line);
        return true;
      }
    ++i;
  }
  return false;
}

void tma_load(void* smem, const CUtensorMap* map, int rank, const int* coords, void* bar, const char* file, int line) {
  const TmaBox box = tma_box(map, rank, smem, "destination", file, line);
  const MapView& v = box.map;
  const uint64_t bytes = box.bytes;
  const uint32_t dst = box.window;
  Mbar* m = find_bar(bar, "cp.async.bulk.tensor (its mbarrier)", file, line);
  {
    // The copy may write any byte of its box from now on: an operand of a wgmma in flight must not be one.
    Quiet q;
    char why[1024];
    if (held_write(dst, uint32_t(dst + bytes), "this cp.async.bulk.tensor writes", why, sizeof(why)) ||
        released_early(dst, uint32_t(dst + bytes), why, sizeof(why)))
      fault(file, line, "%s", why);
  }
  Landing l{static_cast<char*>(smem), dst, std::vector<unsigned char>(bytes, 0), file, line};
  const bool nan = v.nan_fill;
  for_box(v, coords, [&](uint64_t off, const char* src) {
    const uint32_t to = swizzle(dst + uint32_t(off), v.swizzle) - dst;
    if (to + v.esize > bytes)
      fault(file, line, "cp.async.bulk.tensor: the %d-byte swizzle moves box byte %llu outside the box", v.swizzle,
            (unsigned long long)off);
    if (src != nullptr) {
      std::memcpy(&l.bytes[to], src, size_t(v.esize));  // the thread's reads of global memory
    } else if (nan) {
      std::memset(&l.bytes[to], 0xff, size_t(v.esize));
    }
  });
  std::memset(smem, 0xff, bytes);  // poison until the mbarrier phase completes
  Quiet q;
  hb_release(m);
  m->copies.push_back(std::move(l));
  if (m->pending == 0) block_wake(m);
}

void tma_store(const CUtensorMap* map, int rank, const int* coords, const void* smem, const char* file, int line) {
  const TmaBox box = tma_box(map, rank, smem, "source", file, line);
  const MapView& v = box.map;
  const uint64_t bytes = box.bytes;
  const uint32_t from = box.window;
  const char* src;
  {
    Quiet q;
    src = AsyncView().at(from, bytes);  // the async proxy reads: ordinary stores need fence.proxy.async
  }
  for_box(v, coords, [&](uint64_t off, const char* dst) {
    if (dst == nullptr) return;
    const uint32_t at = swizzle(from + uint32_t(off), v.swizzle) - from;
    std::memcpy(const_cast<char*>(dst), src + at, size_t(v.esize));
  });
}

void proxy_fence() {
  Quiet q;
  // Every shared buffer as the generic proxy sees it now, for the async proxy (an over-approximation:
  // on a GPU the fence publishes this thread's own stores; every writer fences before the barrier).
  for (const SharedSpan& s : shared_spans()) g_block.async_view[s.window].assign(s.p, s.p + s.bytes);
}

void setmaxnreg(int count, bool inc, const char* file, int line) {
  if (count < 24 || count > 256 || count % 8 != 0)
    fault(file, line, "setmaxnreg.%s to %d registers: expected a multiple of 8 in 24..256", inc ? "inc" : "dec", count);
  int mine = count;
  {
    Quiet q;
    g_wg_file = file;
    g_wg_line = line;
  }
  warpgroup_collective("setmaxnreg", &mine, &setmaxnreg_check, file, line);
}

void wgmma_fence(const char*, int) {
  Quiet q;
  wgmma_state(thread_linear()).fenced = true;
}

void wgmma_issue(WgmmaCall* call, const char* file, int line) {
  {
    Quiet q;
    if (!wgmma_state(thread_linear()).fenced)
      fault(file, line, "wgmma.mma_async without a wgmma.fence since the thread's last wgmma.wait_group (or start)");
    g_wg_file = file;
    g_wg_line = line;
  }
  warpgroup_collective("wgmma.mma_async", call, &wgmma_compute, file, line);
}

void wgmma_commit(const char*, int) {
  Quiet q;
  ThreadWgmma& t = wgmma_state(thread_linear());
  t.groups.push_back(std::move(t.open));
  t.open.clear();
}

void wgmma_wait(int pending, const char* file, int line) {
  std::vector<Result> land;
  {
    Quiet q;
    ThreadWgmma& t = wgmma_state(thread_linear());
    while (t.groups.size() > size_t(pending)) {
      for (Result& r : t.groups.front()) land.push_back(std::move(r));
      t.groups.pop_front();
    }
    t.fenced = false;
  }
  // The thread's own registers get each result, unless a wgmma still in flight (a later one in the
  // same or a newer group) accumulates into them too: they stay its until that one retires. Before
  // the write, the registers must still hold the poison the issue left there (kAccumulatorPoison, a
  // signalling NaN: arithmetic on it gives a quiet NaN, other values overwrite it), else the thread
  // computed with or wrote them while the tensor cores owned them.
  const char* touched = nullptr;
  int touched_line = 0, touched_reg = 0;
  {
    Quiet q;
    const ThreadWgmma& t = wgmma_state(thread_linear());
    for (size_t i = 0; i < land.size(); ++i) {
      const Result& r = land[i];
      bool later = any_in_flight(t, [&](const Result& x) { return x.d == r.d; });
      for (size_t k = i + 1; k < land.size() && !later; ++k) later = land[k].d == r.d;
      if (later) continue;
      for (size_t e = 0; e < r.v.size() && touched == nullptr; ++e) {
        uint32_t bits;
        std::memcpy(&bits, r.d + e, 4);
        if (bits != kAccumulatorPoison) {
          touched = r.file;
          touched_line = r.line;
          touched_reg = int(e);
        }
      }
      if (touched != nullptr) break;
      std::memcpy(r.d, r.v.data(), r.v.size() * sizeof(float));
    }
  }
  if (touched != nullptr) {
    std::vector<Result>().swap(land);
    fault(file, line,
          "wgmma accumulator register %d of the wgmma.mma_async at %s:%d was read into arithmetic or written by the "
          "thread while the wgmma was in flight (before this wgmma.wait_group retired it)",
          touched_reg, touched, touched_line);
  }
  Quiet q;
  // The first thread of the warpgroup to retire an instruction ends its hold on shared memory (see Held):
  // its operands must still be what it read at issue.
  char why[1024];
  bool changed = false;
  for (const Result& r : land) {
    auto it = g_block.held.find(r.op);
    if (it == g_block.held.end()) continue;
    changed = changed || held_changed(it->second, why, sizeof(why));
    g_block.held.erase(it);
  }
  std::vector<Result>().swap(land);
  if (changed) fault(file, line, "%s", why);
}

void shared_write_check(const void* p, size_t bytes, const char* what, const char* file, int line) {
  Quiet q;
  if (g_block.held.empty()) return;
  const uint32_t lo = shared_window_address(p, bytes, file, line);
  char why[1024], writes[128];
  snprintf(writes, sizeof(writes), "this %s writes", what);
  if (held_write(lo, uint32_t(lo + bytes), writes, why, sizeof(why))) fault(file, line, "%s", why);
}

std::string tensor_map_error() { return g_map_error; }

}  // namespace emu
}  // namespace fastradio

cudaError_t cudaGetDriverEntryPoint(const char* symbol, void** func, unsigned long long,
                                    cudaDriverEntryPointQueryResult* status) {
  if (symbol != nullptr && std::strcmp(symbol, "cuTensorMapEncodeTiled") == 0) {
    *func = reinterpret_cast<void*>(&fastradio::emu::encode_tiled);
    if (status) *status = cudaDriverEntryPointSuccess;
    return cudaSuccess;
  }
  *func = nullptr;
  if (status) *status = cudaDriverEntryPointSymbolNotFound;
  return cudaSuccess;
}

cudaError_t cudaGetDriverEntryPointByVersion(const char* symbol, void** func, unsigned int, unsigned long long flags,
                                             cudaDriverEntryPointQueryResult* status) {
  return cudaGetDriverEntryPoint(symbol, func, flags, status);
}
