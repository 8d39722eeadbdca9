// Fibers for the emulated device: one per CUDA thread, switched cooperatively on one OS thread.
// Cheaper than an OS thread per CUDA thread by an order of magnitude (no kernel round trip per
// switch), deterministic (the scheduler alone decides the interleaving), and still visible to the
// sanitizers through their fiber annotations: ThreadSanitizer sees each fiber as a thread of its
// own (switches carry no synchronisation; the runtime states every happens-before edge itself),
// AddressSanitizer is told each stack switch.
#pragma once

#include <cstddef>

namespace fastradio {
namespace emu {

struct Fiber {
  void* sp = nullptr;          // saved stack pointer while switched out (x86-64 switch)
  void* ucontext = nullptr;    // ucontext_t, other architectures
  char* stack = nullptr;       // mmap'd, with a guard page below
  size_t stack_bytes = 0;
  void* tsan = nullptr;        // __tsan_create_fiber handle (TSan builds)
  void* asan_fake_stack = nullptr;
  const void* asan_bottom = nullptr;  // stack bounds announced to ASan when switching to it
  size_t asan_size = 0;
};

// The fiber of the OS thread that runs the scheduler (its stack is the thread's own).
Fiber* main_fiber();

// Prepares `f` to run entry(arg) on a fresh stack of `stack_bytes` the next time it is switched
// to; `entry` must never return. Re-initialising a used fiber discards its old frames (used after
// a launch was aborted mid-kernel).
void fiber_init(Fiber* f, size_t stack_bytes, void (*entry)(void*), void* arg);
void fiber_destroy(Fiber* f);

// Saves the running context in `from` and resumes `to`; returns when something switches back.
void fiber_switch(Fiber* from, Fiber* to);

// TSan happens-before edges between fibers (no-ops in other builds), and the ignore switch the
// runtime uses around its own bookkeeping (so only the emulated threads' own accesses are checked).
void hb_release(const void* token);
void hb_acquire(const void* token);
void tsan_ignore_begin();
void tsan_ignore_end();

}  // namespace emu
}  // namespace fastradio
