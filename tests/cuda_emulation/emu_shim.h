// Host emulation of the CUDA subset used by csrc/deformable_attn/cuda/cuda_kernels.cu.
// gen.py includes this header first in the rewritten kernel file; see README.md.
//
// Emulated (checked) behaviour
//   * Launches: `k<<<grid, block, smem>>>(...)` runs every block, then every warp of the
//     block, one after another on the calling thread; a warp runs as 32 ucontext fibers.
//     The launch configuration is checked as CUDA would (block a multiple of 32 and at most
//     1024, grid >= 1, dynamic shared memory above 48 KiB only after the
//     cudaFuncSetAttribute opt-in and at most props()->sharedMemPerBlockOptin); a bad
//     configuration throws like C10_CUDA_KERNEL_LAUNCH_CHECK would.
//   * The warps of a block advance round-robin, one warp collective at a time, so that they
//     interleave (a warp overwriting another's shared memory shows); blocks run one after another.
//   * Warp collectives (__shfl_xor_sync, __syncwarp) are rendezvous points: the warp moves
//     on only when all 32 lanes have reached the same collective (same kind, offset, width,
//     type size). A divergent collective, a partial mask, or a collective that some lanes
//     never reach because they returned is an error. Between two collectives the lanes run
//     one after another, in lane order (warps and lanes reversed: see emu_configure).
//   * Dynamic shared memory: one buffer per block, filled with 0x7F bytes (huge floats,
//     huge int64 indices) so that reading before writing shows, followed by a guard zone
//     that is checked after the block.
//   * __ldg(uint4*), 16-byte stores (emu::store16) and float4 atomics check 16-byte alignment.
//   * Outputs the host code allocates with at::empty are NaN-filled (emu::empty_nan), so an
//     element no kernel writes shows up as NaN.
// Not emulated
//   timing and occupancy; true concurrency, so no data races and no memory-model effects (a
//   lane sees every earlier write, warps switch only at collectives, blocks do not overlap);
//   atomics are plain adds in one deterministic order; __syncthreads and shared memory shared between warps (absent:
//   using them fails to compile); out-of-bounds global memory accesses (build with
//   EMU_FLAGS=-fsanitize=address for those); device math (expf, logf, FMA contraction are
//   the host's); streams and asynchronous errors.
//
// Errors found inside a kernel cannot throw (they happen on a fiber stack): they are
// recorded and returned, with the list of launched kernels, by
// torch.ops.lite_detr_emu.emu_take_log().
#pragma once

#include <ATen/ATen.h>
#include <torch/library.h>
#include <ucontext.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)

struct uint4 { unsigned x, y, z, w; };
struct alignas(16) float4 { float x, y, z, w; };
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
struct EmuDim3 { unsigned x = 0, y = 0, z = 0; };
inline thread_local EmuDim3 threadIdx, blockIdx, blockDim, gridDim;
using cudaStream_t = void*;
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };

namespace emu {

constexpr int kLanes = 32;
constexpr size_t kDefaultSmem = 48 * 1024;
constexpr size_t kGuard = 256;
constexpr unsigned char kSmemFill = 0x7F;
constexpr size_t kStack = 256 * 1024;

struct Props {
  int multiProcessorCount = 1;
  size_t sharedMemPerBlockOptin = 227 * 1024;  // H100
};
inline Props* props() {
  static Props p;
  return &p;
}
inline bool reverse_order = false;  // schedule warps and lanes last to first
inline std::map<const void*, int> smem_optin;  // kernel -> cudaFuncAttributeMaxDynamicSharedMemorySize

// Log returned by emu_take_log: one "launch ..." line per launch (the kernel's
// __PRETTY_FUNCTION__ is appended by mark()), one "error ..." line per error.
inline std::vector<std::string> log_lines;
inline long num_errors = 0;

inline thread_local unsigned char* smem_base = nullptr;
inline unsigned char* smem() { return smem_base; }

inline void fail(const std::string& what) {
  if (++num_errors <= 50) {
    std::ostringstream os;
    os << "error " << what << " (block " << blockIdx.x << ", thread " << threadIdx.x << ")";
    log_lines.push_back(os.str());
  }
}

// Called by gen.py's rewrite at the top of every __global__ function.
inline void mark(const char* pretty_function) {
  if (threadIdx.x == 0 && blockIdx.x == 0 && !log_lines.empty()) log_lines.back() += std::string(" ") + pretty_function;
}

// ------------------------------------------------------------------ warps as fibers
struct Warp {
  ucontext_t scheduler;
  ucontext_t ctx[kLanes];
  bool done[kLanes];
  long kind[kLanes];
  alignas(16) unsigned char slots[2][kLanes][16];  // shuffle values, double-buffered by round parity
  long round = 0;
  bool active = true;
};
inline thread_local Warp* cur_warp = nullptr;
inline thread_local int cur_lane = 0;
inline thread_local const std::function<void()>* cur_body = nullptr;

// A lane reaches a collective: hand control back to the scheduler.
inline void collective(long kind) {
  Warp* w = cur_warp;
  w->kind[cur_lane] = kind;
  swapcontext(&w->ctx[cur_lane], &w->scheduler);
}

inline void lane_main() {
  Warp* w = cur_warp;
  const int lane = cur_lane;
  (*cur_body)();
  w->done[lane] = true;  // returning resumes uc_link (the scheduler)
}

// Runs one block of `threads` threads to completion. Warps advance round-robin, one
// collective at a time (so the warps of a block interleave, as on the GPU); within a
// round the lanes of a warp run one after another.
inline void run_block(unsigned threads, const std::function<void()>& body) {
  static thread_local std::vector<std::unique_ptr<char[]>> stacks;  // not zero-filled: pages stay untouched
  const int num_warps = int(threads) / kLanes;
  while (stacks.size() < size_t(num_warps) * kLanes) stacks.emplace_back(new char[kStack]);
  std::vector<std::unique_ptr<Warp>> warps;
  for (int wi = 0; wi < num_warps; ++wi) {
    warps.emplace_back(new Warp);
    Warp& w = *warps.back();
    for (int l = 0; l < kLanes; ++l) {
      w.done[l] = false;
      getcontext(&w.ctx[l]);
      w.ctx[l].uc_stack.ss_sp = stacks[wi * kLanes + l].get();
      w.ctx[l].uc_stack.ss_size = kStack;
      w.ctx[l].uc_link = &w.scheduler;
      makecontext(&w.ctx[l], lane_main, 0);
    }
  }
  cur_body = &body;
  for (int remaining = num_warps; remaining > 0;) {
    for (int i = 0; i < num_warps; ++i) {
      const int wi = reverse_order ? num_warps - 1 - i : i;
      Warp& w = *warps[wi];
      if (!w.active) continue;
      cur_warp = &w;
      for (int j = 0; j < kLanes; ++j) {
        cur_lane = reverse_order ? kLanes - 1 - j : j;
        threadIdx.x = unsigned(wi * kLanes + cur_lane);
        swapcontext(&w.scheduler, &w.ctx[cur_lane]);
      }
      int exited = 0;
      for (int l = 0; l < kLanes; ++l) exited += w.done[l];
      bool same = true;
      for (int l = 1; l < kLanes; ++l) same = same && w.kind[l] == w.kind[0];
      threadIdx.x = unsigned(wi * kLanes);
      if (exited > 0 && exited < kLanes) {
        fail("warp collective reached by " + std::to_string(kLanes - exited) + " lanes; the other " +
             std::to_string(exited) + " returned");
      } else if (exited == 0 && !same) {
        fail("divergent warp collective (lanes wait in different shuffles / __syncwarp)");
      }
      if (exited > 0 || !same) {  // done, or broken: the waiting fibers are abandoned
        w.active = false;
        --remaining;
      }
      ++w.round;
    }
  }
  cur_warp = nullptr;
  cur_body = nullptr;
}

template <typename K>
struct Launcher {
  K* kernel;
  unsigned grid, block;
  size_t smem;
  template <typename... A>
  void operator()(A... args) {
    TORCH_CHECK(block >= 32 && block <= 1024 && block % 32 == 0, "emulated launch: bad block size ", block);
    TORCH_CHECK(grid >= 1, "emulated launch: empty grid");
    if (smem > kDefaultSmem) {
      auto it = smem_optin.find(reinterpret_cast<const void*>(kernel));
      TORCH_CHECK(it != smem_optin.end() && size_t(it->second) >= smem, "emulated launch: ", smem,
                  " bytes of dynamic shared memory without the cudaFuncSetAttribute opt-in");
    }
    std::ostringstream os;
    os << "launch grid=" << grid << " block=" << block << " smem=" << smem;
    log_lines.push_back(os.str());
    std::vector<unsigned char> buf(smem + kGuard + 16);
    unsigned char* base = buf.data() + (16 - reinterpret_cast<uintptr_t>(buf.data()) % 16) % 16;
    for (unsigned b = 0; b < grid; ++b) {
      std::memset(base, kSmemFill, smem + kGuard);
      blockIdx.x = b;
      blockDim.x = block;
      gridDim.x = grid;
      smem_base = base;
      run_block(block, [&] { kernel(args...); });
      for (size_t i = smem; i < smem + kGuard; ++i) {
        if (base[i] != kSmemFill) {
          fail("write past the " + std::to_string(smem) + " bytes of dynamic shared memory");
          break;
        }
      }
    }
    smem_base = nullptr;
  }
};
template <typename K>
Launcher<K> make_launcher(K* kernel, unsigned grid, unsigned block, size_t smem, cudaStream_t) {
  return {kernel, grid, block, smem};
}
template <typename K>
Launcher<K> make_launcher(K* kernel, unsigned grid, unsigned block) {
  return {kernel, grid, block, 0};
}

inline void check_aligned16(const void* p, const char* what) {
  if (reinterpret_cast<uintptr_t>(p) % 16 != 0) fail(std::string("misaligned 16-byte ") + what);
}
inline void store16(void* p, const uint4& v) {
  check_aligned16(p, "store");
  std::memcpy(p, &v, 16);
}

// at::empty with floating outputs NaN-filled.
inline at::Tensor empty_nan(at::IntArrayRef size, const at::TensorOptions& options) {
  at::Tensor t = at::empty(size, options);
  if (at::isFloatingType(t.scalar_type())) t.fill_(std::numeric_limits<double>::quiet_NaN());
  return t;
}

struct Guard {
  template <typename T>
  explicit Guard(T&&) {}
};

}  // namespace emu

// ------------------------------------------------------------------ CUDA API subset
template <typename T>
inline int cudaFuncSetAttribute(T* kernel, cudaFuncAttribute, int value) {
  if (value < 0 || size_t(value) > emu::props()->sharedMemPerBlockOptin) return 1;  // cudaErrorInvalidValue
  emu::smem_optin[reinterpret_cast<const void*>(kernel)] = value;
  return 0;
}
#define C10_CUDA_CHECK(expr) TORCH_CHECK((expr) == 0, "emulated CUDA call failed: " #expr)
#define C10_CUDA_KERNEL_LAUNCH_CHECK() ((void)0)  // the emulated launch throws instead

inline void __syncwarp(unsigned mask = 0xffffffffu) {
  if (mask != 0xffffffffu) emu::fail("__syncwarp with a partial mask");
  emu::collective(1);
}

template <typename T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  static_assert(sizeof(T) <= 16, "shuffled type too large");
  if (mask != 0xffffffffu) emu::fail("__shfl_xor_sync with a partial mask");
  if (width < 1 || width > 32 || (width & (width - 1)) != 0) emu::fail("__shfl_xor_sync width not a power of two <= 32");
  emu::Warp* w = emu::cur_warp;
  const int lane = emu::cur_lane;
  unsigned char* slots = &w->slots[w->round & 1][0][0];
  std::memcpy(slots + 16 * lane, &v, sizeof(T));
  emu::collective(2 + (long(lane_mask & 31) << 8) + (long(width) << 16) + (long(sizeof(T)) << 24));
  // CUDA: a source lane in a later width-segment returns the caller's own value.
  int src = lane ^ lane_mask;
  if (src >= 32 || src / width > lane / width) src = lane;
  T r;
  std::memcpy(&r, slots + 16 * src, sizeof(T));
  return r;
}

inline uint4 __ldg(const uint4* p) {
  emu::check_aligned16(p, "load (__ldg)");
  uint4 v;
  std::memcpy(&v, p, 16);
  return v;
}

// Lanes run one at a time: an atomic is a plain read-modify-write.
inline float atomicAdd(float* p, float v) {
  const float old = *p;
  *p = old + v;
  return old;
}
inline double atomicAdd(double* p, double v) {
  const double old = *p;
  *p = old + v;
  return old;
}
inline float4 atomicAdd(float4* p, float4 v) {
  emu::check_aligned16(p, "float4 atomicAdd");
  float* f = reinterpret_cast<float*>(p);
  return {atomicAdd(f, v.x), atomicAdd(f + 1, v.y), atomicAdd(f + 2, v.z), atomicAdd(f + 3, v.w)};
}

// ------------------------------------------------------------------ self test kernels
// Small kernels with known bugs, so that the tests can check that the checks fire.
namespace emu {
namespace selftest {

__global__ void butterfly(float* out) {  // correct: sum over segments of 8 lanes
  float v = float(threadIdx.x % 32);
  for (int o = 4; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o, 8);
  out[threadIdx.x] = v;
}
__global__ void divergent(float* out) {
  float v = 1.f;
  if (threadIdx.x % 32 < 16) v = __shfl_xor_sync(0xffffffffu, v, 1);
  else __syncwarp();
  out[threadIdx.x] = v;
}
__global__ void early_exit(float* out) {
  if (threadIdx.x % 32 == 5) return;
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.f, 1);
}
__global__ void misaligned(float* out) {
  const uint4 v = __ldg(reinterpret_cast<const uint4*>(out + 1));
  (void)v;
}
__global__ void smem_overflow(float*) {
  unsigned char* s = smem();
  s[64 + threadIdx.x] = 0;  // launched with 64 bytes
}

inline void run(const std::string& which) {
  std::vector<float> out(64 + 4, 0.f);
  float* o = out.data() + (16 - reinterpret_cast<uintptr_t>(out.data()) % 16) % 16 / sizeof(float);
  if (which == "butterfly") {
    make_launcher(butterfly, 1, 64)(o);
    for (int t = 0; t < 64; ++t) {
      if (o[t] != float(28 + 64 * ((t % 32) / 8))) fail("butterfly: wrong shuffle result");
    }
  } else if (which == "divergent") {
    make_launcher(divergent, 1, 32)(o);
  } else if (which == "early_exit") {
    make_launcher(early_exit, 1, 32)(o);
  } else if (which == "misaligned") {
    make_launcher(misaligned, 1, 32)(o);
  } else if (which == "smem_overflow") {
    make_launcher(smem_overflow, 1, 32, 64, nullptr)(o);
  } else if (which == "smem_no_optin") {
    make_launcher(butterfly, 1, 32, kDefaultSmem + 16, nullptr)(o);
  } else {
    TORCH_CHECK(false, "unknown self test ", which);
  }
}

}  // namespace selftest

// Extra ops of torch.ops.lite_detr_emu, registered with the kernels' ones.
inline void register_control_ops(torch::Library& m) {
  m.def("emu_take_log() -> str", [] {
    std::string s;
    for (const auto& line : log_lines) s += line + "\n";
    log_lines.clear();
    num_errors = 0;
    return s;
  });
  m.def("emu_configure(int sms, int smem_optin, bool reverse_order) -> ()",
        [](int64_t sms, int64_t optin, bool reverse) {
          props()->multiProcessorCount = int(sms);
          props()->sharedMemPerBlockOptin = size_t(optin);
          reverse_order = reverse;
          smem_optin.clear();
        });
  m.def("emu_selftest(str which) -> ()", [](std::string which) { selftest::run(which); });
}

}  // namespace emu
