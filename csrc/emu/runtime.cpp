// The emulated device's runtime: launches, the block scheduler, barriers, warp collectives
// (shuffles, ldmatrix, mma.sync), shared memory, cp.async groups, the CUDA runtime API of
// include/cuda_runtime_api.h and the control API of control.h. See device.h for the model and
// DESIGN.md ("The emulated device") for what it checks and what it cannot see.
//
// Scheduling. A launch runs its blocks one at a time, in the order of the schedule (control.h).
// A block's threads are fibers (fiber.h). The scheduler resumes the runnable threads of the block
// in rounds, in the schedule's thread order; a thread runs until it waits (barrier, warp
// collective) or exits. The last thread to arrive at a barrier or collective completes it and runs
// on; the others become runnable again. A round in which nothing can run is a deadlock.
//
// Sanitizers. Everything the runtime does for its own bookkeeping runs with ThreadSanitizer
// ignoring the accesses; the emulated threads' own accesses (kernel code, and the ldmatrix /
// cp.async data movement in emu/ptx.h) are checked. Happens-before edges are exactly those a GPU
// guarantees: the host's writes before a launch -> every thread; every thread -> the host after the
// launch; __syncthreads among a block's threads; __syncwarp among a warp's lanes. Nothing orders
// two blocks, and consecutive blocks run on different TSan fibers, so a race between blocks is
// reported like one between threads. Warp shuffles, ldmatrix and mma.sync carry no ordering of
// memory (as on a GPU since Volta).
#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "common/arch.h"
#include "emu/control.h"
#include "emu/device.h"
#include "emu/fiber.h"
#include "emu/hopper_rt.h"

namespace fastradio {
namespace emu {

ThreadCtx* g_current = nullptr;

namespace {

#if defined(__SANITIZE_ADDRESS__)
constexpr size_t kStackBytes = size_t(1) << 20;  // ASan's redzones make frames several times larger
#else
constexpr size_t kStackBytes = size_t(256) << 10;
#endif
constexpr unsigned kMaxBlockThreads = 1024;
constexpr size_t kStaticSmemLimit = 48 * 1024;
constexpr size_t kDefaultDynamicLimit = 48 * 1024;
constexpr size_t kMaxIn = 48;   // bytes one lane contributes to a warp collective (mma k16: 40)
constexpr size_t kMaxOut = 16;  // bytes one lane receives (ldmatrix x4, mma: 16)

// RAII: the runtime's own accesses are not the kernel's; TSan must not check them.
struct Bookkeeping {
  Bookkeeping() { tsan_ignore_begin(); }
  ~Bookkeeping() { tsan_ignore_end(); }
  Bookkeeping(const Bookkeeping&) = delete;
  Bookkeeping& operator=(const Bookkeeping&) = delete;
};

enum class State { kRunnable, kBarrier, kWarp, kWarpgroup, kBlocked, kExited };

struct Thread {
  ThreadCtx ctx;  // what g_current points at
  Fiber fiber;
  bool started = false;  // the fiber has been initialised and not abandoned since
  State state = State::kExited;
  unsigned linear = 0;
  unsigned warp = 0;
  uint64_t collectives = 0;  // warp collectives this thread has completed in this block
  const char* wait_file = "";
  int wait_line = 0;
  const void* wait_key = nullptr;  // kBlocked: what block_wake must name
  const char* wait_what = "";
  std::vector<CpAsyncCopy> open;               // cp.async issued since the last commit
  std::deque<std::vector<CpAsyncCopy>> groups;  // committed groups, oldest first
  size_t front_landed = 0;                      // copies of groups.front() already handed out
};

struct Warp {
  unsigned lanes = 0;      // active lanes (fewer than 32 only in a block's partial last warp)
  unsigned full_mask = 0;  // their mask
  unsigned arrived = 0;
  unsigned exited = 0;
  CollectiveArgs args{Collective::kShflSync, 0};
  const char* file = "";
  int line = 0;
  uint64_t seq = 0;
  size_t in_bytes = 0;
  int operand[32];  // shuffles: each lane's own srcLane / delta / laneMask (a register in PTX)
  alignas(16) unsigned char in[32][kMaxIn];
  alignas(16) unsigned char out[32][kMaxOut];
};

// Named barrier (bar.sync / bar.arrive with an id and a thread count). On a GPU a warp executes
// the instruction as a whole: it waits for the warp's lanes, then adds them to the barrier's count
// at once. Here the lanes first meet in a warp rendezvous (a warp collective: all 32 lanes, the
// same line), whose last lane adds the warp to the round; so a lane can neither run ahead into the
// next round nor split its warp between two. A round's first warp fixes its count; the round
// completes at `count` threads and wakes its bar.sync waiters. A block that ends with a round open
// (more arrivals than syncs, as an unbalanced hand-off leaves) is an error: on a GPU the next
// block on the SM, or the next tile of a persistent loop, would inherit it.
struct NamedBarrier {
  unsigned count = 0;     // this round's thread count (0: no arrival yet)
  unsigned arrived = 0;
  uint64_t rounds = 0;    // rounds completed in this block
  const char* file = "";  // the round's first arrival
  int line = 0;
};
constexpr unsigned kNamedBarriers = 16;

struct SharedBuffer {
  const void* tag;  // FASTRADIO_SHARED declaration (null: the dynamic buffer)
  char* p;
  size_t bytes;
  const char* name;
  uint32_t window = 0;  // its first shared address (hopper_rt.h)
};

// A warpgroup rendezvous in progress (hopper_rt.h warpgroup_collective).
struct Warpgroup {
  unsigned arrived = 0;
  const char* what = "";
  const char* file = "";
  int line = 0;
  void* records[128];
};
constexpr uint32_t kWindowAlign = 1024;  // the largest swizzle repeat (128 B x 8 rows)

struct Device {
  int sms;
};

struct FuncAttr {
  int device;
  const void* func;
  size_t max_dynamic_smem;
};

const char* collective_name(Collective k) {
  switch (k) {
    case Collective::kShflSync: return "__shfl_sync";
    case Collective::kShflUpSync: return "__shfl_up_sync";
    case Collective::kShflDownSync: return "__shfl_down_sync";
    case Collective::kShflXorSync: return "__shfl_xor_sync";
    case Collective::kBallotSync: return "__ballot_sync";
    case Collective::kSyncwarp: return "__syncwarp";
    case Collective::kLdmatrix: return "ldmatrix";
    case Collective::kMmaF16K16: return "mma.sync.m16n8k16.f16";
    case Collective::kMmaBf16K16: return "mma.sync.m16n8k16.bf16";
    case Collective::kMmaF16K8: return "mma.sync.m16n8k8.f16";
    case Collective::kStmatrix: return "stmatrix";
    case Collective::kBarSync: return "bar.sync";
    case Collective::kBarArrive: return "bar.arrive";
  }
  return "collective";
}

// --- global state (one emulated GPU per process; the host side is single-threaded) -------------

struct Runtime {
  Device devices[kDevices] = {{108}, {2}, {108}, {108}};
  int current_device = 0;
  cudaError_t last_error = cudaSuccess;
  std::vector<std::string> errors;
  std::vector<FuncAttr> func_attrs;
  Schedule schedule;
  Stats stats;
  std::vector<std::unique_ptr<Thread>> pool[2];  // fiber sets used by alternate blocks
  bool pool_dirty = false;                       // a launch was aborted mid-kernel
};

// Never destroyed: suspended fibers' frames still refer to the threads in its pool at exit (TSan
// would see the exit-time delete race with their last switch), and nothing needs its destructor.
Runtime& rt() {
  static Runtime* r = new Runtime;
  return *r;
}

// The launch in progress.
struct LaunchState {
  const LaunchConfig* cfg = nullptr;
  void (*body)(void*) = nullptr;
  void* closure = nullptr;
  char start_token = 0;  // host -> threads
  char end_token = 0;    // threads -> host
  SharedBuffer dynamic{nullptr, nullptr, 0, "dynamic shared memory"};
  // The running block.
  dim3 block_idx;
  unsigned nthreads = 0;
  std::vector<Thread*> threads;
  std::vector<Warp> warps;
  std::vector<Warpgroup> warpgroups;
  uint32_t window_next = 0;  // the next free shared address
  unsigned barrier_arrived = 0;
  NamedBarrier named[kNamedBarriers];  // [0] unused: __syncthreads is barrier_arrived
  unsigned exited = 0;
  std::vector<SharedBuffer> statics;
  size_t static_bytes = 0;
  std::vector<char> tokens;  // per block: [barrier, syncwarp of each warp, named barriers] (unique TSan addresses)
  size_t token_base = 0;
  bool aborted = false;
  // The resume order of the running block (control.h Schedule): a permutation of its threads,
  // walked in rounds (pos: the next position; round_ran: a thread ran in this round) or, greedy,
  // always from the start.
  std::vector<unsigned> perm;
  size_t pos = 0;
  bool round_ran = false;
  bool greedy = false;
  Order order = Order::kForward;
  std::mt19937_64* rng = nullptr;
};

LaunchState* g_launch = nullptr;
Thread* g_thread = nullptr;

Thread* cur() { return g_thread; }

std::string vformat(const char* fmt, va_list ap) {
  char buf[2048];
  vsnprintf(buf, sizeof(buf), fmt, ap);
  return buf;
}

std::string format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string format(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::string s = vformat(fmt, ap);
  va_end(ap);
  return s;
}

void record_error(const std::string& msg) {
  std::fprintf(stderr, "[emu] error: %s\n", msg.c_str());
  std::fflush(stderr);
  rt().errors.push_back(msg);
}

std::string where_launch() {
  const LaunchConfig& c = *g_launch->cfg;
  return format("%s (launched at %s:%d, grid (%u,%u,%u), block (%u,%u,%u), %zu B dynamic shared)", c.name, c.file,
                c.line, c.grid.x, c.grid.y, c.grid.z, c.block.x, c.block.y, c.block.z, c.dynamic_smem);
}

std::string where_thread(const Thread* t) {
  return format("block (%u,%u,%u) thread (%u,%u,%u)", t->ctx.block_idx.x, t->ctx.block_idx.y, t->ctx.block_idx.z,
                t->ctx.thread_idx.x, t->ctx.thread_idx.y, t->ctx.thread_idx.z);
}

void switch_to_main(Thread* t) {
  {
    Bookkeeping guard;
    ++rt().stats.switches;
  }
  fiber_switch(&t->fiber, main_fiber());
}

std::vector<unsigned> order(Order o, unsigned n, std::mt19937_64& rng);

// The next thread of the running block to resume, by the schedule, or nullptr when none can run
// (every thread exited, or a deadlock: the caller tells the two apart).
Thread* next_runnable() {
  LaunchState& L = *g_launch;
  if (L.greedy) {
    for (unsigned i : L.perm)
      if (L.threads[i]->state == State::kRunnable) return L.threads[i];
    return nullptr;
  }
  for (;;) {
    while (L.pos < L.perm.size()) {
      Thread* t = L.threads[L.perm[L.pos++]];
      if (t->state == State::kRunnable) {
        L.round_ran = true;
        return t;
      }
    }
    if (!L.round_ran) return nullptr;  // a whole round in which nothing could run
    L.round_ran = false;
    L.pos = 0;
    if (L.order == Order::kShuffle) L.perm = order(Order::kShuffle, L.nthreads, *L.rng);
  }
}

// The running thread waits or exited: the next runnable thread of the block runs straight away
// (one switch instead of two through the scheduler); only when none can run does control go back
// to the scheduler, which then finishes the block or reports the deadlock.
void switch_away(Thread* t) {
  Thread* next;
  {
    Bookkeeping guard;
    next = g_launch->aborted ? nullptr : next_runnable();
    ++rt().stats.switches;
    if (next != nullptr) {
      g_thread = next;
      g_current = &next->ctx;
    }
  }
  fiber_switch(&t->fiber, next == nullptr ? main_fiber() : &next->fiber);
}

// The running thread gives up for good: the launch is aborted (like a faulting kernel). Its
// fiber is abandoned, never unwound: nothing on its stack may own heap memory by then.
[[noreturn]] void abort_thread() {
  Thread* t = cur();
  g_launch->aborted = true;
  hb_release(&g_launch->end_token);  // what it wrote precedes the host's reads after the launch
  tsan_ignore_begin();  // this fiber never runs again; its TSan state is recreated with it
  switch_to_main(t);
  std::fprintf(stderr, "[emu] fatal: an aborted thread was resumed\n");
  std::abort();
}

// `what` by value, emptied before the fiber is abandoned: the callers' format(...) temporaries
// would otherwise leak (LeakSanitizer reports them), as would this function's own.
[[noreturn]] void fail(const char* file, int line, std::string what) {
  record_error(format("%s at %s:%d, %s, in %s", what.c_str(), file, line, where_thread(cur()).c_str(),
                      where_launch().c_str()));
  std::string().swap(what);
  abort_thread();
}

// --- threads -----------------------------------------------------------------------------------

void thread_exit(Thread* t);

void thread_entry(void* arg) {
  Thread* t = static_cast<Thread*>(arg);
  for (;;) {
    hb_acquire(&g_launch->start_token);
    g_launch->body(g_launch->closure);
    thread_exit(t);  // returns when the fiber is started for another block
  }
}

void thread_exit(Thread* t) {
  tsan_ignore_begin();
  size_t pending = t->open.size();
  for (const auto& g : t->groups) pending += g.size();
  pending -= t->front_landed;
  if (pending > 0)
    fail("(thread exit)", 0, format("the thread exits with %zu cp.async copies never waited for", pending));
  char hopper[256];
  if (hopper_thread_exit(t->linear, hopper, sizeof(hopper))) fail("(thread exit)", 0, hopper);
  if (t->linear / 128 < g_launch->warpgroups.size() && g_launch->warpgroups[t->linear / 128].arrived > 0) {
    const Warpgroup& g = g_launch->warpgroups[t->linear / 128];
    fail("(thread exit)", 0,
         format("the thread exits while %u threads of its warpgroup wait in %s at %s:%d", g.arrived, g.what, g.file,
                g.line));
  }
  Warp& w = g_launch->warps[t->warp];
  if (w.arrived > 0)
    fail("(thread exit)", 0,
         format("lane %u exits while %u lanes of its warp wait in %s at %s:%d", t->ctx.lane, w.arrived,
                collective_name(w.args.kind), w.file, w.line));
  if (g_launch->barrier_arrived > 0) {
    const Thread* waiting = nullptr;
    for (const Thread* o : g_launch->threads)
      if (o->state == State::kBarrier) waiting = o;
    fail("(thread exit)", 0,
         format("the thread exits while %u threads of its block wait at __syncthreads (%s:%d)",
                g_launch->barrier_arrived, waiting ? waiting->wait_file : "?", waiting ? waiting->wait_line : 0));
  }
  t->state = State::kExited;
  ++w.exited;
  ++g_launch->exited;
  hb_release(&g_launch->end_token);
  tsan_ignore_end();
  switch_away(t);
}

Thread* pool_thread(int set, unsigned i) {
  auto& pool = rt().pool[set];
  while (pool.size() <= i) pool.push_back(std::make_unique<Thread>());
  Thread* t = pool[i].get();
  if (!t->started) {
    fiber_init(&t->fiber, kStackBytes, &thread_entry, t);
    t->started = true;
  }
  return t;
}

std::vector<unsigned> order(Order o, unsigned n, std::mt19937_64& rng) {
  std::vector<unsigned> v(n);
  for (unsigned i = 0; i < n; ++i) v[i] = o == Order::kReverse ? n - 1 - i : i;
  if (o == Order::kShuffle) std::shuffle(v.begin(), v.end(), rng);
  return v;
}

std::string deadlock_report() {
  LaunchState& L = *g_launch;
  std::string s = format("deadlock: no thread of the block can run (%u of %u exited)", L.exited, L.nthreads);
  // Group the waiting threads by what they wait for.
  struct Group {
    std::string what;
    unsigned count;
    unsigned first;
  };
  std::vector<Group> groups;
  for (const Thread* t : L.threads) {
    std::string what;
    if (t->state == State::kBarrier) {
      what = format("at __syncthreads %s:%d", t->wait_file, t->wait_line);
    } else if (t->state == State::kBlocked) {
      what = format("waiting on %s at %s:%d", t->wait_what, t->wait_file, t->wait_line);
    } else if (t->state == State::kWarpgroup) {
      const Warpgroup& g = L.warpgroups[t->linear / 128];
      what = format("warpgroup %u: in %s at %s:%d (%u of 128 threads arrived)", t->linear / 128, g.what, g.file,
                    g.line, g.arrived);
    } else if (t->state == State::kWarp) {
      const Warp& w = L.warps[t->warp];
      what = format("warp %u: in %s at %s:%d (%u of %u lanes arrived)", t->warp, collective_name(w.args.kind), w.file,
                    w.line, w.arrived, w.lanes);
    } else {
      continue;
    }
    auto it = std::find_if(groups.begin(), groups.end(), [&](const Group& g) { return g.what == what; });
    if (it == groups.end()) {
      groups.push_back({what, 1, t->linear});
    } else {
      ++it->count;
    }
  }
  for (const Group& g : groups) s += format("; %u threads %s (first: thread %u)", g.count, g.what.c_str(), g.first);
  return s;
}

// Runs one block; false if the launch was aborted.
bool run_block(unsigned linear_block, unsigned exec_index, std::mt19937_64& rng) {
  LaunchState& L = *g_launch;
  const LaunchConfig& c = *L.cfg;
  const unsigned n = L.nthreads;
  L.block_idx = dim3(linear_block % c.grid.x, (linear_block / c.grid.x) % c.grid.y,
                     linear_block / (c.grid.x * c.grid.y));
  L.barrier_arrived = 0;
  L.exited = 0;
  L.token_base = size_t(linear_block) * (1 + L.warps.size() + kNamedBarriers);
  for (unsigned w = 0; w < L.warps.size(); ++w) {
    Warp& warp = L.warps[w];
    warp.lanes = std::min(32u, n - 32 * w);
    warp.full_mask = warp.lanes == 32 ? 0xffffffffu : (1u << warp.lanes) - 1;
    warp.arrived = 0;
    warp.exited = 0;
  }
  for (Warpgroup& g : L.warpgroups) g.arrived = 0;
  for (NamedBarrier& b : L.named) b = NamedBarrier{};
  L.window_next = kWindowAlign;  // shared address 0 stays unused: a null descriptor is an error
  hopper_block_begin(n);
  if (c.dynamic_smem > 0) {  // a fresh buffer per block: blocks never share shared memory
    void* p = nullptr;
    if (posix_memalign(&p, 128, c.dynamic_smem) != 0) {
      record_error("out of host memory for dynamic shared memory");
      L.aborted = true;
      return false;
    }
    std::memset(p, 0xff, c.dynamic_smem);  // poisoned: NaN in every float format
    L.dynamic.p = static_cast<char*>(p);
    L.dynamic.bytes = c.dynamic_smem;
    L.dynamic.window = L.window_next;
    L.window_next += uint32_t((c.dynamic_smem + kWindowAlign - 1) / kWindowAlign * kWindowAlign);
  }
  const int set = int(exec_index & 1);
  for (unsigned i = 0; i < n; ++i) {
    Thread* t = pool_thread(set, i);
    t->ctx.thread_idx = dim3(i % c.block.x, (i / c.block.x) % c.block.y, i / (c.block.x * c.block.y));
    t->ctx.block_idx = L.block_idx;
    t->ctx.block_dim = c.block;
    t->ctx.grid_dim = c.grid;
    t->ctx.lane = i % 32;
    t->linear = i;
    t->warp = i / 32;
    t->state = State::kRunnable;
    t->collectives = 0;
    t->open.clear();
    t->groups.clear();
    t->front_landed = 0;
    L.threads[i] = t;
  }
  ++rt().stats.blocks;
  rt().stats.threads += n;
  L.greedy = rt().schedule.greedy;
  L.order = rt().schedule.threads;
  L.rng = &rng;
  L.perm = order(L.order, n, rng);
  L.pos = 0;
  L.round_ran = false;
  // Resume threads until none can run; the threads hand over to each other (switch_away) and come
  // back here only when no thread of the block can run or the launch was aborted.
  while (!L.aborted) {
    Thread* t = next_runnable();
    if (t == nullptr) {
      if (L.exited < n) {
        record_error(format("%s in block (%u,%u,%u) of %s", deadlock_report().c_str(), L.block_idx.x,
                            L.block_idx.y, L.block_idx.z, where_launch().c_str()));
        L.aborted = true;
      }
      break;
    }
    g_thread = t;
    g_current = &t->ctx;
    ++rt().stats.switches;
    fiber_switch(main_fiber(), &t->fiber);
    g_thread = nullptr;
    g_current = nullptr;
  }
  for (unsigned id = 1; id < kNamedBarriers && !L.aborted; ++id) {
    const NamedBarrier& b = L.named[id];
    if (b.arrived > 0) {
      record_error(format("named barrier %u: the block (%u,%u,%u) ends with %u of %u threads arrived (first at %s:%d), "
                          "a round nobody completes, in %s",
                          id, L.block_idx.x, L.block_idx.y, L.block_idx.z, b.arrived, b.count, b.file, b.line,
                          where_launch().c_str()));
      L.aborted = true;
    }
  }
  if (!L.aborted) {
    const std::string undone = hopper_block_end();
    if (!undone.empty()) {
      record_error(format("%s in block (%u,%u,%u) of %s", undone.c_str(), L.block_idx.x, L.block_idx.y,
                          L.block_idx.z, where_launch().c_str()));
      L.aborted = true;
    }
  }
  for (SharedBuffer& b : L.statics) std::free(b.p);
  L.statics.clear();
  L.static_bytes = 0;
  std::free(L.dynamic.p);
  L.dynamic.p = nullptr;
  return !L.aborted;
}

size_t dynamic_limit(const void* func) {
  for (const FuncAttr& a : rt().func_attrs)
    if (a.device == rt().current_device && a.func == func) return a.max_dynamic_smem;
  return kDefaultDynamicLimit;
}

cudaError_t check_config(const LaunchConfig& c, std::string* why) {
  const dim3 g = c.grid, b = c.block;
  if (g.x == 0 || g.y == 0 || g.z == 0 || b.x == 0 || b.y == 0 || b.z == 0) {
    *why = "a grid or block dimension is 0";
    return cudaErrorInvalidConfiguration;
  }
  if (g.x > 0x7fffffffu || g.y > 65535 || g.z > 65535) {
    *why = "grid over (2^31-1, 65535, 65535)";
    return cudaErrorInvalidConfiguration;
  }
  if (b.x > 1024 || b.y > 1024 || b.z > 64 || uint64_t(b.x) * b.y * b.z > kMaxBlockThreads) {
    *why = "block over (1024, 1024, 64) or more than 1024 threads";
    return cudaErrorInvalidConfiguration;
  }
  const size_t limit = dynamic_limit(c.kernel);
  if (c.dynamic_smem > limit) {
    *why = format("%zu B of dynamic shared memory, over the kernel's limit of %zu B%s", c.dynamic_smem, limit,
                  limit == kDefaultDynamicLimit ? " (more than 48 KiB needs cudaFuncSetAttribute("
                                                  "cudaFuncAttributeMaxDynamicSharedMemorySize) first)"
                                                : "");
    return cudaErrorInvalidValue;
  }
  return cudaSuccess;
}

// --- warp collectives --------------------------------------------------------------------------

// fp16 / bf16 bits -> value, from the formats' definitions (exact in fp32). Tables, because an
// mma.sync reads 768 of them.
float f16_value_slow(uint16_t h) {
  const int sign = h >> 15, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  double v;
  if (exp == 0x1f) {
    v = man ? NAN : INFINITY;
  } else if (exp == 0) {
    v = std::ldexp(double(man), -24);
  } else {
    v = std::ldexp(double(man + 1024), exp - 25);
  }
  return float(sign ? -v : v);
}

float bf16_value_slow(uint16_t b) {
  const uint32_t u = uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

struct HalfTables {
  float f16[65536];
  float bf16[65536];
  HalfTables() {
    for (uint32_t i = 0; i < 65536; ++i) {
      f16[i] = f16_value_slow(uint16_t(i));
      bf16[i] = bf16_value_slow(uint16_t(i));
    }
  }
};

const HalfTables& half_tables() {
  static const HalfTables t;
  return t;
}

uint16_t half_of(uint32_t reg, int which) { return uint16_t(which ? reg >> 16 : reg & 0xffffu); }

// mma.sync.aligned.{m16n8k16,m16n8k8}.row.col.f32.{f16,bf16}.{f16,bf16}.f32 (PTX ISA, "Matrix
// fragments for mma.m16n8k16 / mma.m16n8k8"): with g = lane / 4 and t = lane % 4,
//   A (16 x K, row): register j of lane (g, t) holds A[g + 8*(j%2)][2t + 8*(j/2) + {0,1}]
//   B (K x 8, col):  register j holds B[2t + 8j + {0,1}][g]
//   C, D (16 x 8):   element e holds C[g + 8*(e/2)][2t + e%2]
void compute_mma(Warp& w, int k, bool bf16) {
  const int a_regs = k / 4, b_regs = k / 8;
  const float* value = bf16 ? half_tables().bf16 : half_tables().f16;
  float A[16][16], B[16][8], C[16][8];
  for (int lane = 0; lane < 32; ++lane) {
    uint32_t r[10];
    std::memcpy(r, w.in[lane], (a_regs + b_regs + 4) * 4);
    const int g = lane / 4, t = lane % 4;
    for (int j = 0; j < a_regs; ++j)
      for (int h = 0; h < 2; ++h) A[g + 8 * (j % 2)][2 * t + 8 * (j / 2) + h] = value[half_of(r[j], h)];
    for (int j = 0; j < b_regs; ++j)
      for (int h = 0; h < 2; ++h) B[2 * t + 8 * j + h][g] = value[half_of(r[a_regs + j], h)];
    float c[4];
    std::memcpy(c, &r[a_regs + b_regs], 16);
    for (int e = 0; e < 4; ++e) C[g + 8 * (e / 2)][2 * t + e % 2] = c[e];
  }
  for (int lane = 0; lane < 32; ++lane) {
    const int g = lane / 4, t = lane % 4;
    float d[4];
    for (int e = 0; e < 4; ++e) {
      const int row = g + 8 * (e / 2), col = 2 * t + e % 2;
      double s = C[row][col];
      // Products and sum in double (every product of two 16-bit floats is exact there), one rounding.
      for (int kk = 0; kk < k; ++kk) s += double(A[row][kk]) * double(B[kk][col]);
      d[e] = float(s);
    }
    std::memcpy(w.out[lane], d, 16);
  }
}

// ldmatrix.sync.aligned.m8n8.{x1,x2,x4}[.trans].shared.b16 (PTX ISA): lanes 8i..8i+7 give the rows of
// matrix i; lane (g, t) receives in register i the elements (g, 2t), (g, 2t+1) of matrix i, or with
// .trans (2t, g), (2t+1, g).
void compute_ldmatrix(Warp& w, int num, bool trans) {
  auto elem = [&](int row_lane, int col) {
    uint16_t e;
    std::memcpy(&e, w.in[row_lane] + 2 * col, 2);
    return uint32_t(e);
  };
  for (int lane = 0; lane < 32; ++lane) {
    const int g = lane / 4, t = lane % 4;
    uint32_t r[4] = {0u, 0u, 0u, 0u};
    for (int i = 0; i < num; ++i) {
      if (trans) {
        r[i] = elem(8 * i + 2 * t, g) | (elem(8 * i + 2 * t + 1, g) << 16);
      } else {
        r[i] = elem(8 * i + g, 2 * t) | (elem(8 * i + g, 2 * t + 1) << 16);
      }
    }
    std::memcpy(w.out[lane], r, 16);
  }
}

// stmatrix.sync.aligned.m8n8.{x1,x2,x4}[.trans].shared.b16 (PTX ISA): the inverse of ldmatrix. Lane
// (g, t) holds in register i the elements (g, 2t), (g, 2t+1) of matrix i; lane 8i + r stores row r
// of matrix i, or with .trans its column r. Each lane receives the 16 bytes it stores.
void compute_stmatrix(Warp& w, int num, bool trans) {
  auto elem = [&](int i, int row, int col) {  // element (row, col) of matrix i, from its owner's register
    uint32_t reg;
    std::memcpy(&reg, w.in[4 * row + col / 2] + 4 * i, 4);
    return uint16_t(col % 2 ? reg >> 16 : reg & 0xffffu);
  };
  for (int lane = 0; lane < 32; ++lane) {
    uint16_t row[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    const int i = lane / 8, r = lane % 8;
    if (i < num)
      for (int j = 0; j < 8; ++j) row[j] = trans ? elem(i, j, r) : elem(i, r, j);
    std::memcpy(w.out[lane], row, 16);
  }
}

// Source lane of a shuffle (CUDA C++ Programming Guide, "Warp Shuffle Functions"; PTX shfl.sync,
// which takes the operand's low 5 bits): lanes form segments of `width`; a source past the
// caller's segment (before it for __shfl_up_sync) leaves the value unchanged. __shfl_xor_sync may
// read an earlier segment (the guide: "able to access elements from earlier groups of threads").
int shfl_source(Collective kind, int lane, int param, int width) {
  const int base = lane / width * width;
  const int b = param & 31;
  switch (kind) {
    case Collective::kShflSync: return base + ((param % width) + width) % width;
    case Collective::kShflUpSync: return lane - b >= base ? lane - b : lane;
    case Collective::kShflDownSync: return lane + b < base + width ? lane + b : lane;
    case Collective::kShflXorSync: {
      const int src = lane ^ b;
      return src < base + width ? src : lane;
    }
    default: return lane;
  }
}

const char* named_barrier_what(unsigned id) {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (unsigned i = 0; i < kNamedBarriers; ++i) v.push_back(format("bar.sync of named barrier %u", i));
    return v;
  }();
  return names[id].c_str();
}

// A warp's arrival at a named barrier (the last lane of its rendezvous): the warp's lanes join the
// round at once; each lane learns the round it joined (out), and a completed round wakes its waiters.
void named_barrier_warp(Warp& w) {
  LaunchState& L = *g_launch;
  const unsigned id = unsigned(w.args.param0), count = unsigned(w.args.param1);
  NamedBarrier& b = L.named[id];
  if (b.arrived == 0) {
    b.count = count;
    b.file = w.file;
    b.line = w.line;
  } else if (b.count != count) {
    fail(w.file, w.line, format("%s %u, %u: this round of the barrier counts %u threads (first arrival at %s:%d)",
                                collective_name(w.args.kind), id, count, b.count, b.file, b.line));
  }
  const uint64_t joined = b.rounds;
  b.arrived += w.lanes;
  if (b.arrived > b.count)
    fail(w.file, w.line, format("%s %u, %u: a warp of %u lanes brings the round to %u threads, past its count",
                                collective_name(w.args.kind), id, count, w.lanes, b.arrived));
  if (b.arrived == b.count) {
    b.arrived = 0;
    b.count = 0;
    ++b.rounds;
    ++rt().stats.barriers;
    block_wake(&b);
  }
  for (unsigned lane = 0; lane < w.lanes; ++lane) std::memcpy(w.out[lane], &joined, sizeof(joined));
}

// Completes the collective every lane of `w` has arrived at (in the last lane's fiber).
void complete(Warp& w) {
  const Collective k = w.args.kind;
  switch (k) {
    case Collective::kShflSync:
    case Collective::kShflUpSync:
    case Collective::kShflDownSync:
    case Collective::kShflXorSync: {
      const int width = w.args.param1;
      if (width < 1 || width > 32 || (width & (width - 1)) != 0)
        fail(w.file, w.line, format("%s with width %d (must be a power of two <= 32)", collective_name(k), width));
      for (unsigned lane = 0; lane < w.lanes; ++lane) {
        const int src = shfl_source(k, int(lane), w.operand[lane], width);
        if (src < 0 || unsigned(src) >= w.lanes)
          fail(w.file, w.line, format("%s: lane %u reads lane %d, which is not active", collective_name(k), lane, src));
        std::memcpy(w.out[lane], w.in[src], w.in_bytes);
      }
      break;
    }
    case Collective::kBallotSync: {
      uint32_t bits = 0;
      for (unsigned lane = 0; lane < w.lanes; ++lane) {
        uint32_t p;
        std::memcpy(&p, w.in[lane], 4);
        bits |= (p ? 1u : 0u) << lane;
      }
      for (unsigned lane = 0; lane < w.lanes; ++lane) std::memcpy(w.out[lane], &bits, 4);
      break;
    }
    case Collective::kSyncwarp: break;
    case Collective::kLdmatrix: compute_ldmatrix(w, w.args.param0, w.args.param1 != 0); break;
    case Collective::kMmaF16K16: compute_mma(w, 16, false); break;
    case Collective::kMmaBf16K16: compute_mma(w, 16, true); break;
    case Collective::kMmaF16K8: compute_mma(w, 8, false); break;
    case Collective::kStmatrix: compute_stmatrix(w, w.args.param0, w.args.param1 != 0); break;
    case Collective::kBarSync:
    case Collective::kBarArrive: named_barrier_warp(w); break;
  }
}

bool same_site(const char* f1, int l1, const char* f2, int l2) {
  return l1 == l2 && (f1 == f2 || std::strcmp(f1, f2) == 0);
}

const char* token(size_t i) { return g_launch->tokens.data() + g_launch->token_base + i; }

// The arrival of the running thread at a barrier, or at the collective of its warp: true if it
// completed it (the caller runs on), false if it must wait.
void wait_for_wakeup(Thread* t, State s, const char* file, int line) {
  t->state = s;
  t->wait_file = file;
  t->wait_line = line;
  // If the launch is aborted while this thread waits, it never exits: what it wrote so far must
  // still precede the host's reads after the launch.
  hb_release(&g_launch->end_token);
  switch_away(t);
}

// fp32 -> 16-bit float, round to nearest even, by scaling to the format's quantum: `digits`
// significant bits, `emin` the smallest normal exponent, `max` the largest finite value.
double round_to_format(double a, int digits, int emin, double max_finite) {
  int e;
  std::frexp(a, &e);  // a = m * 2^e, m in [0.5, 1): the leading bit is 2^(e-1)
  const int q = std::max(e - 1, emin) - (digits - 1);
  const double r = std::ldexp(std::nearbyint(std::ldexp(a, -q)), q);  // exact scaling; ties to even
  return r > max_finite ? INFINITY : r;
}

}  // namespace

// --- kernel-facing entry points (device.h, ptx.h) ------------------------------------------------

void fault(const char* file, int line, const char* what, ...) {
  tsan_ignore_begin();
  va_list ap;
  va_start(ap, what);
  char msg[2048];  // not a std::string: this frame is abandoned (fail)
  vsnprintf(msg, sizeof(msg), what, ap);
  va_end(ap);
  fail(file, line, msg);
}

void syncthreads(const char* file, int line) {
  Bookkeeping guard;
  Thread* t = cur();
  LaunchState& L = *g_launch;
  if (L.exited > 0)
    fail(file, line, format("__syncthreads reached after %u threads of the block exited", L.exited));
  hb_release(token(0));
  if (++L.barrier_arrived < L.nthreads) {
    wait_for_wakeup(t, State::kBarrier, file, line);
  } else {
    for (const Thread* o : L.threads) {
      if (o == t || same_site(o->wait_file, o->wait_line, file, line)) continue;
      unsigned here = 0;
      for (const Thread* x : L.threads) here += x == t || same_site(x->wait_file, x->wait_line, file, line);
      fail(file, line,
           format("divergent __syncthreads: %u threads arrive here, thread %u waits at %s:%d", here, o->linear,
                  o->wait_file, o->wait_line));
    }
    L.barrier_arrived = 0;
    ++rt().stats.barriers;
    for (Thread* o : L.threads)
      if (o != t) o->state = State::kRunnable;
  }
  hb_acquire(token(0));
}

// bar.sync / bar.arrive: the warp rendezvous, whose last lane adds the warp (named_barrier_warp), then
// a bar.sync lane waits unless its warp's arrival completed the round.
void named_barrier(unsigned id, unsigned count, bool wait, const char* file, int line) {
  LaunchState& L = *g_launch;
  Thread* t = cur();
  unsigned mask;
  {
    Bookkeeping guard;
    const char* op = wait ? "bar.sync" : "bar.arrive";
    if (id == 0 || id >= kNamedBarriers)
      fail(file, line, format("%s %u: named barriers are 1..15 here (0 is __syncthreads')", op, id));
    if (count == 0 || count % 32 != 0 || count > L.nthreads)
      fail(file, line, format("%s %u, %u: the thread count must be a multiple of 32 in 32..%u (the block's threads)",
                              op, id, count, L.nthreads));
    mask = L.warps[t->warp].full_mask;
    hb_release(token(1 + L.warps.size() + id));  // what this thread did precedes the waiters' next steps
  }
  uint64_t joined = 0;  // the barrier's completed rounds when the warp arrived
  warp_collective(CollectiveArgs{wait ? Collective::kBarSync : Collective::kBarArrive, mask, int(id), int(count)},
                  nullptr, 0, &joined, sizeof(joined), file, line);
  if (!wait) return;
  if (L.named[id].rounds == joined) block_wait(&L.named[id], named_barrier_what(id), file, line);
  Bookkeeping guard;
  hb_acquire(token(1 + L.warps.size() + id));
}

void warp_collective(const CollectiveArgs& a, const void* in, size_t in_bytes, void* out, size_t out_bytes,
                     const char* file, int line) {
  Bookkeeping guard;
  Thread* t = cur();
  LaunchState& L = *g_launch;
  Warp& w = L.warps[t->warp];
  const char* name = collective_name(a.kind);  // for the messages below
  const bool matrix = a.kind == Collective::kLdmatrix || a.kind == Collective::kStmatrix || a.kind == Collective::kMmaF16K16 ||
                      a.kind == Collective::kMmaBf16K16 || a.kind == Collective::kMmaF16K8;
  if (matrix && w.lanes != 32) fail(file, line, format("%s in a warp of %u threads (needs all 32)", name, w.lanes));
  if (!matrix && a.mask != w.full_mask)
    fail(file, line,
         format("%s with mask 0x%08x; the warp's active lanes are 0x%08x (the emulator takes full masks only)", name,
                a.mask, w.full_mask));
  if (w.exited > 0) fail(file, line, format("%s after %u lanes of the warp exited", name, w.exited));
  if (in_bytes > kMaxIn || out_bytes > kMaxOut) fail(file, line, format("%s moves too many bytes", name));
  const bool shuffle = a.kind == Collective::kShflSync || a.kind == Collective::kShflUpSync ||
                       a.kind == Collective::kShflDownSync || a.kind == Collective::kShflXorSync;
  if (w.arrived == 0) {
    w.args = a;
    w.file = file;
    w.line = line;
    w.seq = t->collectives;
    w.in_bytes = in_bytes;
  } else if (w.args.kind != a.kind || (!shuffle && w.args.param0 != a.param0) || w.args.param1 != a.param1 ||
             w.args.mask != a.mask || !same_site(w.file, w.line, file, line) || w.seq != t->collectives) {
    fail(file, line,
         format("divergent warp collective: lane %u calls %s (its collective #%llu) while %u lanes wait in %s at "
                "%s:%d (#%llu)",
                t->ctx.lane, name, (unsigned long long)t->collectives, w.arrived, collective_name(w.args.kind), w.file,
                w.line, (unsigned long long)w.seq));
  }
  if (in_bytes > 0) std::memcpy(w.in[t->ctx.lane], in, in_bytes);
  w.operand[t->ctx.lane] = a.param0;
  if (a.kind == Collective::kSyncwarp) hb_release(token(1 + t->warp));
  if (++w.arrived < w.lanes) {
    wait_for_wakeup(t, State::kWarp, file, line);
  } else {
    complete(w);
    w.arrived = 0;
    ++rt().stats.collectives;
    for (unsigned i = 32 * t->warp; i < 32 * t->warp + w.lanes; ++i)
      if (L.threads[i] != t) L.threads[i]->state = State::kRunnable;
  }
  if (a.kind == Collective::kSyncwarp) hb_acquire(token(1 + t->warp));
  if (out_bytes > 0) std::memcpy(out, w.out[t->ctx.lane], out_bytes);
  ++t->collectives;
}

void syncwarp(unsigned mask, const char* file, int line) {
  warp_collective(CollectiveArgs{Collective::kSyncwarp, mask}, nullptr, 0, nullptr, 0, file, line);
}

void* static_shared(const void* tag, size_t bytes, size_t align, const char* name, const char* file, int line) {
  Bookkeeping guard;
  LaunchState& L = *g_launch;
  for (const SharedBuffer& b : L.statics)
    if (b.tag == tag) return b.p;
  if (L.static_bytes + bytes > kStaticSmemLimit)
    fail(file, line, format("static shared memory of the block reaches %zu B with '%s' (limit 48 KiB)",
                            L.static_bytes + bytes, name));
  const size_t optin = size_t(smem_optin_limit(FASTRADIO_EMU_ARCH));
  if (L.static_bytes + bytes + L.dynamic.bytes > optin)
    fail(file, line, format("static (%zu B) + dynamic (%zu B) shared memory is over sm_%d's %zu B", L.static_bytes + bytes,
                            L.dynamic.bytes, FASTRADIO_EMU_ARCH, optin));
  void* p = nullptr;
  if (posix_memalign(&p, std::max<size_t>(align, sizeof(void*)), bytes ? bytes : 1) != 0)
    fail(file, line, "out of host memory for shared memory");
  std::memset(p, 0xff, bytes);  // poisoned: NaN in every float format
  L.statics.push_back(SharedBuffer{tag, static_cast<char*>(p), bytes, name, L.window_next});
  L.window_next += uint32_t((bytes + kWindowAlign - 1) / kWindowAlign * kWindowAlign);
  L.static_bytes += bytes;
  return p;
}

void* dynamic_shared(size_t align, const char* file, int line) {
  Bookkeeping guard;
  LaunchState& L = *g_launch;
  if (align > 128) fail(file, line, format("dynamic shared memory aligned to %zu B (the emulator gives 128)", align));
  return L.dynamic.p;
}

bool is_shared(const void* p, size_t bytes) {
  Bookkeeping guard;
  LaunchState& L = *g_launch;
  const char* c = static_cast<const char*>(p);
  auto inside = [&](const SharedBuffer& b) { return b.p != nullptr && c >= b.p && c + bytes <= b.p + b.bytes; };
  if (inside(L.dynamic)) return true;
  for (const SharedBuffer& b : L.statics)
    if (inside(b)) return true;
  return false;
}

void cp_async_issue(void* dst, uint64_t lo, uint64_t hi) {
  Bookkeeping guard;
  cur()->open.push_back(CpAsyncCopy{dst, lo, hi});
}

void cp_async_commit() {
  Bookkeeping guard;
  Thread* t = cur();
  t->groups.push_back(std::move(t->open));
  t->open.clear();
}

bool cp_async_next_landing(int pending, CpAsyncCopy* copy) {
  Bookkeeping guard;
  Thread* t = cur();
  while (t->groups.size() > size_t(pending)) {
    auto& front = t->groups.front();
    if (t->front_landed < front.size()) {
      *copy = front[t->front_landed++];
      return true;
    }
    t->groups.pop_front();
    t->front_landed = 0;
  }
  return false;
}

// --- hopper_rt.h ----------------------------------------------------------------------------------

void block_wait(const void* key, const char* what, const char* file, int line) {
  Bookkeeping guard;
  Thread* t = cur();
  t->wait_key = key;
  t->wait_what = what;
  wait_for_wakeup(t, State::kBlocked, file, line);
  t->wait_key = nullptr;
}

void block_wake(const void* key) {
  Bookkeeping guard;
  for (Thread* o : g_launch->threads)
    if (o->state == State::kBlocked && o->wait_key == key) o->state = State::kRunnable;
}

void block_yield_to(const void* key) {
  Thread* t = cur();
  Thread* next = nullptr;
  {
    Bookkeeping guard;
    if (g_launch->aborted) return;
    for (unsigned i : g_launch->perm) {  // the schedule's order among the released threads
      Thread* o = g_launch->threads[i];
      if (o != t && o->state == State::kRunnable && o->wait_key == key) {
        next = o;
        break;
      }
    }
    if (next == nullptr) return;
    hb_release(&g_launch->end_token);  // as a waiting thread: the launch may be aborted meanwhile
    ++rt().stats.switches;
    g_thread = next;
    g_current = &next->ctx;
  }
  fiber_switch(&t->fiber, &next->fiber);
}

unsigned thread_linear() { return cur()->linear; }
unsigned block_threads() { return g_launch->nthreads; }

void warpgroup_collective(const char* what, void* record, WarpgroupFn fn, const char* file, int line) {
  Bookkeeping guard;
  Thread* t = cur();
  LaunchState& L = *g_launch;
  const unsigned wg = t->linear / 128;
  if (wg >= L.warpgroups.size())
    fail(file, line, format("%s in a block of %u threads: thread %u has no complete warpgroup (128 threads)", what,
                            L.nthreads, t->linear));
  Warpgroup& g = L.warpgroups[wg];
  for (unsigned w = 4 * wg; w < 4 * wg + 4; ++w)
    if (L.warps[w].exited > 0) fail(file, line, format("%s after %u threads of the warpgroup exited", what, L.warps[w].exited));
  if (g.arrived == 0) {
    g.what = what;
    g.file = file;
    g.line = line;
  } else if (std::strcmp(g.what, what) != 0 || !same_site(g.file, g.line, file, line)) {
    fail(file, line, format("divergent warpgroup collective: thread %u calls %s while %u threads of warpgroup %u wait "
                            "in %s at %s:%d",
                            t->linear, what, g.arrived, wg, g.what, g.file, g.line));
  }
  g.records[t->linear % 128] = record;
  if (++g.arrived < 128) {
    wait_for_wakeup(t, State::kWarpgroup, file, line);
  } else {
    fn(g.records);
    g.arrived = 0;
    ++rt().stats.collectives;
    for (unsigned i = 128 * wg; i < 128 * wg + 128; ++i)
      if (L.threads[i] != t) L.threads[i]->state = State::kRunnable;
  }
}

uint32_t shared_window_address(const void* p, size_t bytes, const char* file, int line) {
  Bookkeeping guard;
  LaunchState& L = *g_launch;
  const char* c = static_cast<const char*>(p);
  auto inside = [&](const SharedBuffer& b) { return b.p != nullptr && c >= b.p && c + bytes <= b.p + b.bytes; };
  if (inside(L.dynamic)) return L.dynamic.window + uint32_t(c - L.dynamic.p);
  for (const SharedBuffer& b : L.statics)
    if (inside(b)) return b.window + uint32_t(c - b.p);
  fail(file, line, format("%p (%zu bytes) is not inside the block's shared memory", p, bytes));
}

std::vector<SharedSpan> shared_spans() {
  Bookkeeping guard;
  LaunchState& L = *g_launch;
  std::vector<SharedSpan> v;
  if (L.dynamic.p != nullptr) v.push_back({L.dynamic.p, L.dynamic.bytes, L.dynamic.window});
  for (const SharedBuffer& b : L.statics) v.push_back({b.p, b.bytes, b.window});
  return v;
}

char* shared_window_pointer(uint32_t addr, size_t bytes) {
  Bookkeeping guard;
  LaunchState& L = *g_launch;
  auto inside = [&](const SharedBuffer& b) {
    return b.p != nullptr && addr >= b.window && uint64_t(addr) + bytes <= uint64_t(b.window) + b.bytes;
  };
  if (inside(L.dynamic)) return L.dynamic.p + (addr - L.dynamic.window);
  for (const SharedBuffer& b : L.statics)
    if (inside(b)) return b.p + (addr - b.window);
  return nullptr;
}

uint16_t cvt_rn_f16(float x) {
  const uint16_t sign = std::signbit(x) ? 0x8000 : 0;
  if (std::isnan(x)) return 0x7fff;  // PTX: the canonical NaN
  const double r = round_to_format(std::fabs(double(x)), 11, -14, 65504.0);
  if (std::isinf(r)) return sign | 0x7c00;
  if (r < std::ldexp(1.0, -14)) return sign | uint16_t(std::ldexp(r, 24));  // subnormal (or 0): r / 2^-24
  int e;
  const double m = std::frexp(r, &e);  // r = m * 2^e, m in [0.5, 1)
  return sign | uint16_t((e - 1 + 15) << 10) | uint16_t(std::ldexp(m, 11) - 1024);
}

uint16_t cvt_rn_bf16(float x) {
  const uint16_t sign = std::signbit(x) ? 0x8000 : 0;
  if (std::isnan(x)) return 0x7fff;
  const double max_finite = std::ldexp(255.0, 120);  // (2 - 2^-7) * 2^127
  const double r = round_to_format(std::fabs(double(x)), 8, -126, max_finite);
  if (std::isinf(r)) return sign | 0x7f80;
  const float f = float(r);  // exact: r is a bf16 value
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return sign | uint16_t(u >> 16);
}

void launch(const LaunchConfig& cfg, void (*body)(void*), void* closure) {
  Bookkeeping guard;  // the host side of a launch is the runtime's own business
  Runtime& R = rt();
  std::string why;
  const cudaError_t e = check_config(cfg, &why);
  if (e != cudaSuccess) {
    R.last_error = e;
    record_error(format("launch of %s at %s:%d refused (%s): %s", cfg.name, cfg.file, cfg.line, cudaGetErrorName(e),
                        why.c_str()));
    return;
  }
  if (R.pool_dirty) {  // fibers abandoned mid-kernel by an aborted launch: fresh stacks and TSan state
    for (auto& set : R.pool)
      for (auto& t : set) t->started = false;
    R.pool_dirty = false;
  }
  LaunchState L;
  L.cfg = &cfg;
  L.body = body;
  L.closure = closure;
  L.nthreads = cfg.block.x * cfg.block.y * cfg.block.z;
  L.threads.resize(L.nthreads);
  L.warps.resize((L.nthreads + 31) / 32);
  L.warpgroups.resize(L.nthreads / 128);
  const uint64_t nblocks = uint64_t(cfg.grid.x) * cfg.grid.y * cfg.grid.z;
  L.tokens.assign(size_t(nblocks) * (1 + L.warps.size() + kNamedBarriers), 0);
  L.dynamic.bytes = cfg.dynamic_smem;
  g_launch = &L;
  ++R.stats.launches;
  std::mt19937_64 rng(R.schedule.seed ^ (0x9e3779b97f4a7c15ull * (R.stats.launches + 1)));
  std::vector<unsigned> blocks(static_cast<size_t>(nblocks));
  for (uint64_t i = 0; i < nblocks; ++i)
    blocks[size_t(i)] = unsigned(R.schedule.blocks == Order::kReverse ? nblocks - 1 - i : i);
  if (R.schedule.blocks == Order::kShuffle) std::shuffle(blocks.begin(), blocks.end(), rng);
  hb_release(&L.start_token);  // the host's writes before the launch -> every thread
  for (size_t i = 0; i < blocks.size(); ++i)
    if (!run_block(blocks[i], unsigned(i), rng)) break;
  hb_acquire(&L.end_token);  // every thread -> the host after the launch
  if (L.aborted) {
    R.pool_dirty = true;
    R.last_error = cudaErrorLaunchFailure;
  }
  g_launch = nullptr;
}

// --- control.h ------------------------------------------------------------------------------------

void set_schedule(const Schedule& s) { rt().schedule = s; }
Schedule schedule() { return rt().schedule; }

void set_sm_count(int device, int sms) {
  if (device >= 0 && device < kDevices && sms > 0) rt().devices[device].sms = sms;
}

int emulated_arch() { return FASTRADIO_EMU_ARCH; }

std::vector<std::string> take_errors() {
  std::vector<std::string> e;
  e.swap(rt().errors);
  return e;
}

Stats stats() { return rt().stats; }

}  // namespace emu
}  // namespace fastradio

// --- the CUDA runtime API (include/cuda_runtime_api.h) ---------------------------------------------

using fastradio::emu::rt;

namespace {
// A runtime call that fails also becomes the last error (cudaGetLastError: "the last error that
// has been produced by any of the runtime calls"), as launches do.
cudaError_t api_result(cudaError_t e) {
  if (e != cudaSuccess) rt().last_error = e;
  return e;
}
}  // namespace

cudaError_t cudaGetLastError() {
  const cudaError_t e = rt().last_error;
  rt().last_error = cudaSuccess;
  return e;
}

cudaError_t cudaPeekAtLastError() { return rt().last_error; }

const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInitializationError: return "cudaErrorInitializationError";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInvalidDeviceFunction: return "cudaErrorInvalidDeviceFunction";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInsufficientDriver: return "cudaErrorInsufficientDriver";
    case cudaErrorMisalignedAddress: return "cudaErrorMisalignedAddress";
    case cudaErrorIllegalInstruction: return "cudaErrorIllegalInstruction";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorLaunchOutOfResources: return "cudaErrorLaunchOutOfResources";
  }
  return "cudaErrorUnknown";
}

const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorLaunchFailure:
      return "unspecified launch failure (emulated device: the kernel faulted; see the [emu] error above)";
    default: return cudaGetErrorName(e);
  }
}

cudaError_t cudaGetDeviceCount(int* count) {
  *count = fastradio::emu::kDevices;
  return cudaSuccess;
}

cudaError_t cudaGetDevice(int* device) {
  *device = rt().current_device;
  return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) {
  if (device < 0 || device >= fastradio::emu::kDevices) return api_result(cudaErrorInvalidDevice);
  rt().current_device = device;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  if (device < 0 || device >= fastradio::emu::kDevices) return api_result(cudaErrorInvalidDevice);
  switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *value = 1024; return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = 48 * 1024; return cudaSuccess;
    case cudaDevAttrWarpSize: *value = 32; return cudaSuccess;
    case cudaDevAttrMultiProcessorCount: *value = rt().devices[device].sms; return cudaSuccess;
    case cudaDevAttrComputeCapabilityMajor: *value = FASTRADIO_EMU_ARCH / 10; return cudaSuccess;
    case cudaDevAttrComputeCapabilityMinor: *value = FASTRADIO_EMU_ARCH % 10; return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin:
      *value = fastradio::smem_optin_limit(FASTRADIO_EMU_ARCH);
      return cudaSuccess;
  }
  return api_result(cudaErrorInvalidValue);
}

cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }  // launches are synchronous

cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }

cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value) {
  if (func == nullptr || attr != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 ||
      value > fastradio::smem_optin_limit(FASTRADIO_EMU_ARCH))
    return api_result(cudaErrorInvalidValue);
  auto& attrs = rt().func_attrs;
  for (auto& a : attrs)
    if (a.device == rt().current_device && a.func == func) {
      a.max_dynamic_smem = size_t(value);
      return cudaSuccess;
    }
  attrs.push_back({rt().current_device, func, size_t(value)});
  return cudaSuccess;
}

cudaError_t cudaPointerGetAttributes(cudaPointerAttributes* a, const void* ptr) {
  if (a == nullptr || ptr == nullptr) return api_result(cudaErrorInvalidValue);
  // Every host pointer is "device memory" of the current emulated device.
  a->type = cudaMemoryTypeDevice;
  a->device = rt().current_device;
  a->devicePointer = const_cast<void*>(ptr);
  a->hostPointer = nullptr;
  return cudaSuccess;
}
