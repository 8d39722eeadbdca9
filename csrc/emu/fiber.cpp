// Fiber switching for the emulated device (fiber.h): a hand-written switch on x86-64 (callee-saved
// registers, MXCSR and the x87 control word; no signal-mask system call as in swapcontext), and
// ucontext elsewhere. Sanitizer annotations follow the interfaces of <sanitizer/tsan_interface.h>
// and <sanitizer/common_interface_defs.h>.
#include "emu/fiber.h"

#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define FASTRADIO_EMU_TSAN 1
#endif
#if __has_feature(address_sanitizer)
#define FASTRADIO_EMU_ASAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define FASTRADIO_EMU_TSAN 1
#endif
#if defined(__SANITIZE_ADDRESS__)
#define FASTRADIO_EMU_ASAN 1
#endif

#if defined(FASTRADIO_EMU_TSAN)
#include <sanitizer/tsan_interface.h>
extern "C" void __tsan_ignore_thread_begin();  // exported by the TSan runtime, not in its header
extern "C" void __tsan_ignore_thread_end();
#endif
#if defined(FASTRADIO_EMU_ASAN)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#if defined(__x86_64__)
extern "C" void fastradio_emu_swap(void** save_sp, void* new_sp);
extern "C" void fastradio_emu_start();
// Saves rbp rbx r12-r15, MXCSR and the x87 control word on the current stack, stores rsp in
// *save_sp, loads new_sp and restores the same from there. A new fiber's stack is laid out so that
// the restore "returns" into fastradio_emu_start with r12 = arg and r13 = entry.
asm(R"(
  .text
  .globl fastradio_emu_swap
  .type fastradio_emu_swap, @function
fastradio_emu_swap:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size fastradio_emu_swap, .-fastradio_emu_swap

  .globl fastradio_emu_start
  .type fastradio_emu_start, @function
fastradio_emu_start:
  movq %r12, %rdi
  callq *%r13
  ud2
  .size fastradio_emu_start, .-fastradio_emu_start
)");
#endif

namespace fastradio {
namespace emu {

namespace {

struct Entry {
  void (*fn)(void*);
  void* arg;
};

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "[emu] fatal: %s\n", what);
  std::abort();
}

// First code on a new fiber's stack: finish the ASan switch that brought us here, then run.
void fiber_main(void* p) {
#if defined(FASTRADIO_EMU_ASAN)
  const void* bottom = nullptr;
  size_t size = 0;
  __sanitizer_finish_switch_fiber(nullptr, &bottom, &size);
  Fiber* m = main_fiber();
  if (m->asan_bottom == nullptr) {  // the main stack, learnt from the first switch away from it
    m->asan_bottom = bottom;
    m->asan_size = size;
  }
#endif
  const Entry* e = static_cast<const Entry*>(p);
  e->fn(e->arg);
  die("a fiber's entry returned");
}

#if !defined(__x86_64__)
void ucontext_main(unsigned hi, unsigned lo) {
  fiber_main(reinterpret_cast<void*>((uintptr_t(hi) << 32) | uintptr_t(lo)));
}
#endif

}  // namespace

Fiber* main_fiber() {
  static Fiber f = [] {
    Fiber m;
#if defined(FASTRADIO_EMU_TSAN)
    m.tsan = __tsan_get_current_fiber();
#endif
#if !defined(__x86_64__)
    m.ucontext = new ucontext_t;
#endif
    return m;
  }();
  return &f;
}

void fiber_init(Fiber* f, size_t stack_bytes, void (*entry)(void*), void* arg) {
  const size_t page = size_t(sysconf(_SC_PAGESIZE));
  stack_bytes = (stack_bytes + page - 1) / page * page;
  if (f->stack == nullptr || f->stack_bytes != stack_bytes) {
    if (f->stack != nullptr) munmap(f->stack - page, f->stack_bytes + page);
    void* m = mmap(nullptr, stack_bytes + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (m == MAP_FAILED) die("mmap of a fiber stack failed");
    mprotect(m, page, PROT_NONE);  // guard page: a stack overflow faults instead of corrupting
    f->stack = static_cast<char*>(m) + page;
    f->stack_bytes = stack_bytes;
  }
#if defined(FASTRADIO_EMU_ASAN)
  __asan_unpoison_memory_region(f->stack, f->stack_bytes);  // frames of an abandoned run
#endif
#if defined(FASTRADIO_EMU_TSAN)
  if (f->tsan != nullptr) __tsan_destroy_fiber(f->tsan);  // fresh TSan state (shadow stack, ignores)
  f->tsan = __tsan_create_fiber(0);
#endif
  f->asan_bottom = f->stack;
  f->asan_size = f->stack_bytes;
  // The entry record lives at the top of the fiber's own stack.
  char* top = f->stack + f->stack_bytes;
  top -= 64;
  Entry* e = reinterpret_cast<Entry*>(top);
  e->fn = entry;
  e->arg = arg;
#if defined(__x86_64__)
  // Frame popped by fastradio_emu_swap: [csr][r15][r14][r13][r12][rbx][rbp][ret]. After the ret,
  // rsp must be 16-byte aligned so that fastradio_emu_start's call leaves the callee at 8 mod 16.
  uintptr_t sp = reinterpret_cast<uintptr_t>(top) & ~uintptr_t(15);
  sp -= 16;                                       // padding; ret target at sp - 8 -> after ret rsp = sp
  uint64_t* frame = reinterpret_cast<uint64_t*>(sp - 8 * 8);
  const uint32_t mxcsr = 0x1f80, fpcw = 0x037f;  // the default floating-point environment
  frame[0] = uint64_t(mxcsr) | (uint64_t(fpcw) << 32);
  frame[1] = 0;                                            // r15
  frame[2] = 0;                                            // r14
  frame[3] = reinterpret_cast<uint64_t>(&fiber_main);      // r13: entry
  frame[4] = reinterpret_cast<uint64_t>(e);                // r12: arg
  frame[5] = 0;                                            // rbx
  frame[6] = 0;                                            // rbp
  frame[7] = reinterpret_cast<uint64_t>(&fastradio_emu_start);
  f->sp = frame;
#else
  if (f->ucontext == nullptr) f->ucontext = new ucontext_t;
  ucontext_t* uc = static_cast<ucontext_t*>(f->ucontext);
  getcontext(uc);
  uc->uc_stack.ss_sp = f->stack;
  uc->uc_stack.ss_size = size_t(top - f->stack);
  uc->uc_link = nullptr;
  const uintptr_t a = reinterpret_cast<uintptr_t>(e);
  makecontext(uc, reinterpret_cast<void (*)()>(&ucontext_main), 2, unsigned(a >> 32), unsigned(a & 0xffffffffu));
#endif
}

void fiber_destroy(Fiber* f) {
  const size_t page = size_t(sysconf(_SC_PAGESIZE));
  if (f->stack != nullptr) munmap(f->stack - page, f->stack_bytes + page);
#if defined(FASTRADIO_EMU_TSAN)
  if (f->tsan != nullptr) __tsan_destroy_fiber(f->tsan);
#endif
#if !defined(__x86_64__)
  delete static_cast<ucontext_t*>(f->ucontext);
#endif
  *f = Fiber{};
}

#if defined(FASTRADIO_EMU_TSAN)
// Ignore sections (tsan_ignore_begin/end) open on the running fiber. Atomic: every fiber updates it.
std::atomic<int> g_tsan_ignores{0};
#endif

void fiber_switch(Fiber* from, Fiber* to) {
#if defined(FASTRADIO_EMU_ASAN)
  __sanitizer_start_switch_fiber(&from->asan_fake_stack, to->asan_bottom, to->asan_size);
#endif
#if defined(FASTRADIO_EMU_TSAN)
  // No fiber holds an ignore section while switched out: TSan refuses to destroy a fiber that
  // does (fatal "finished with ignores enabled"), and fibers abandoned mid-runtime by an aborted
  // launch are destroyed. `from` closes its sections here and reopens them when it resumes.
  const int ignores = g_tsan_ignores.exchange(0, std::memory_order_relaxed);
  for (int i = 0; i < ignores; ++i) __tsan_ignore_thread_end();
  __tsan_switch_to_fiber(to->tsan, __tsan_switch_to_fiber_no_sync);
#endif
#if defined(__x86_64__)
  fastradio_emu_swap(&from->sp, to->sp);
#else
  swapcontext(static_cast<ucontext_t*>(from->ucontext), static_cast<ucontext_t*>(to->ucontext));
#endif
#if defined(FASTRADIO_EMU_ASAN)
  __sanitizer_finish_switch_fiber(from->asan_fake_stack, nullptr, nullptr);
#endif
#if defined(FASTRADIO_EMU_TSAN)
  for (int i = 0; i < ignores; ++i) __tsan_ignore_thread_begin();
  g_tsan_ignores.store(ignores, std::memory_order_relaxed);
#endif
}

#if defined(FASTRADIO_EMU_TSAN)
void hb_release(const void* token) { __tsan_release(const_cast<void*>(token)); }
void hb_acquire(const void* token) { __tsan_acquire(const_cast<void*>(token)); }
void tsan_ignore_begin() {
  __tsan_ignore_thread_begin();
  g_tsan_ignores.fetch_add(1, std::memory_order_relaxed);
}
void tsan_ignore_end() {
  g_tsan_ignores.fetch_sub(1, std::memory_order_relaxed);
  __tsan_ignore_thread_end();
}
#else
void hb_release(const void*) {}
void hb_acquire(const void*) {}
void tsan_ignore_begin() {}
void tsan_ignore_end() {}
#endif

}  // namespace emu
}  // namespace fastradio
