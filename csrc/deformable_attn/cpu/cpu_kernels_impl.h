// The CPU kernels of the KDA / MSDA op family, compiled once per instruction
// set: cpu_kernels.cpp includes this file several times, each inside its own
// namespace LITE_DETR_CPU_ISA and `#pragma GCC target`, and picks one at run
// time. No include guard on purpose; every header it needs is included by
// cpu_kernels.cpp before the first inclusion, so that no inline function of a
// header is compiled for a wider instruction set than the baseline.
//
// Forward: one task per (batch, query, head). Each task samples its L*P
// locations into a per-thread buffer of L*P*D values (KDA: keys and logits,
// then softmax and weighted sum) or a weighted sum of D values (MSDA), so
// nothing of size Nq*M*L*P*D is allocated.
//
// Backward: phase 1 (one task per (batch, query, head)) computes the query and
// location gradients and the per-sample coefficients that multiply the value
// and key gradients; phase 2 scatters into grad_value / grad_key, one task per
// (batch, value head, channel block), so no two threads write the same
// element and the result is deterministic.

namespace LITE_DETR_CPU_ISA {

constexpr int64_t kChannelBlock = 32;

template <typename scalar_t, typename acc_t>
inline void axpy(acc_t alpha, const scalar_t* __restrict__ x, acc_t* __restrict__ y, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    y[i] += alpha * static_cast<acc_t>(x[i]);
  }
}

template <typename scalar_t, typename acc_t>
inline acc_t dot(const acc_t* __restrict__ a, const scalar_t* __restrict__ x, int64_t n) {
  acc_t r = 0;
#pragma omp simd reduction(+ : r)
  for (int64_t i = 0; i < n; ++i) {
    r += a[i] * static_cast<acc_t>(x[i]);
  }
  return r;
}

template <typename scalar_t, typename acc_t>
inline void to_acc(const scalar_t* x, acc_t* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    y[i] = static_cast<acc_t>(x[i]);
  }
}

// Bilinear sample of `dim` channels, out = sum_k w_k * rows[index_k]; returns
// dot(q, out), in one pass over the channels.
// A corner outside the map reads a valid corner's row with weight 0 (a hit
// has at least one), so the loop has no branches and vectorises.
template <typename scalar_t, typename acc_t>
inline acc_t gather_dot(
    const BilinearCorners<acc_t>& c,
    const scalar_t* base,
    int64_t row_stride,
    int64_t dim,
    const acc_t* __restrict__ q,
    acc_t* __restrict__ out) {
  int64_t valid = 0;
  for (int k = 3; k >= 0; --k) {
    if (c.index[k] >= 0) valid = c.index[k];
  }
  const scalar_t* __restrict__ r[4];
  acc_t w[4];
  for (int k = 0; k < 4; ++k) {
    const bool in = c.index[k] >= 0;
    r[k] = base + (in ? c.index[k] : valid) * row_stride;
    w[k] = in ? c.weight[k] : acc_t(0);
  }
  acc_t result = 0;
#pragma omp simd reduction(+ : result)
  for (int64_t d = 0; d < dim; ++d) {
    const acc_t v = w[0] * static_cast<acc_t>(r[0][d]) + w[1] * static_cast<acc_t>(r[1][d]) +
        w[2] * static_cast<acc_t>(r[2][d]) + w[3] * static_cast<acc_t>(r[3][d]);
    out[d] = v;
    result += q[d] * v;
  }
  return result;
}

template <typename acc_t>
inline bool corners_of(const Levels& lv, const acc_t* loc, int64_t sample, BilinearCorners<acc_t>& c) {
  const int64_t l = sample / lv.num_points;
  return bilinear_corners<acc_t>(
      loc[2 * sample], loc[2 * sample + 1], lv.shapes[2 * l], lv.shapes[2 * l + 1], lv.starts[l], c);
}

inline int64_t grain_for(int64_t work_per_task) {
  // Aim for tasks of roughly 32k multiply-adds each.
  return std::max<int64_t>(1, 32768 / std::max<int64_t>(1, work_per_task));
}

// The corners of the L*P samples of one (batch, query, head) task.
template <typename acc_t>
class TaskCorners {
 public:
  explicit TaskCorners(int64_t num_samples) : corners_(num_samples), hit_(num_samples) {}

  void compute(const Levels& lv, const acc_t* task_loc) {
    for (size_t i = 0; i < corners_.size(); ++i) {
      hit_[i] = corners_of(lv, task_loc, static_cast<int64_t>(i), corners_[i]);
    }
  }

  // Asks the memory system for every row the task will touch.
  template <typename T>
  void prefetch(const HeadRows<T>& rows, int64_t dim, bool for_write = false) const {
    const int64_t bytes = dim * static_cast<int64_t>(sizeof(T));
    for (size_t i = 0; i < corners_.size(); ++i) {
      if (!hit_[i]) continue;
      for (int k = 0; k < 4; ++k) {
        if (corners_[i].index[k] < 0) continue;
        const char* row = reinterpret_cast<const char*>(rows.base + corners_[i].index[k] * rows.row_stride);
        for (int64_t offset = 0; offset < bytes; offset += 64) {
          if (for_write) {
            __builtin_prefetch(row + offset, 1, 3);
          } else {
            __builtin_prefetch(row + offset, 0, 3);
          }
        }
      }
    }
  }

  bool hit(int64_t i) const { return hit_[i] != 0; }
  const BilinearCorners<acc_t>& operator[](int64_t i) const { return corners_[i]; }

 private:
  std::vector<BilinearCorners<acc_t>> corners_;
  std::vector<char> hit_;
};

// Runs body(t, corners) for the tasks t in [begin, end), computing the corners
// of task t+1 and prefetching its rows while task t runs: the gathers are
// latency-bound, their rows being scattered over a tensor far larger than the
// caches. `task_loc(t)` gives the locations of task t, `prefetch(t, corners)`
// issues its prefetches.
template <typename acc_t, typename TaskLoc, typename Prefetch, typename Body>
void pipelined_tasks(
    int64_t begin,
    int64_t end,
    const Levels& lv,
    int64_t num_samples,
    TaskLoc&& task_loc,
    Prefetch&& prefetch,
    Body&& body) {
  if (begin >= end) return;
  TaskCorners<acc_t> current(num_samples), next(num_samples);
  current.compute(lv, task_loc(begin));
  prefetch(begin, current);
  for (int64_t t = begin; t < end; ++t) {
    if (t + 1 < end) {
      next.compute(lv, task_loc(t + 1));
      prefetch(t + 1, next);
    }
    body(t, current);
    std::swap(current, next);
  }
}

// Where task t = (b, query, m) reads: its value head's rows (and key rows).
template <typename scalar_t>
struct TaskRows {
  const SamplingSizes& s;
  const scalar_t* value;
  const scalar_t* key;  // nullptr: key = value
  int64_t key_dim, value_dim;

  int64_t value_head(int64_t t) const { return s.value_heads == 1 ? 0 : t % s.num_heads; }
  int64_t batch(int64_t t) const { return t / s.num_heads / s.num_query; }
  HeadRows<scalar_t> values(int64_t t) const {
    const int64_t offset = (batch(t) * s.num_value * s.value_heads + value_head(t)) * value_dim;
    return {value + offset, s.value_heads * value_dim};
  }
  HeadRows<scalar_t> keys(int64_t t) const {
    if (key == nullptr) return values(t);
    const int64_t offset = (batch(t) * s.num_value * s.value_heads + value_head(t)) * key_dim;
    return {key + offset, s.value_heads * key_dim};
  }
};

// ---------------------------------------------------------------- forward

// kDim > 0 fixes Dk = Dv = kDim at compile time (the D=32 / D=64 fast paths).
template <typename scalar_t, typename acc_t, int64_t kDim>
void kda_forward_kernel(
    const SamplingSizes& s,
    const Levels& lv,
    const scalar_t* query,
    const scalar_t* key,  // nullptr: key = value
    const scalar_t* value,
    const acc_t* loc,
    acc_t scale,
    scalar_t* output,
    acc_t* logsumexp) {
  const int64_t Dk = kDim > 0 ? kDim : s.key_dim, Dv = kDim > 0 ? kDim : s.value_dim;
  const int64_t LP = s.num_levels * s.num_points;
  const int64_t tasks = s.batch * s.num_query * s.num_heads;
  const TaskRows<scalar_t> rows{s, value, key, Dk, Dv};
  // Two passes over a task's L*P samples, both from L1: the key samples and
  // their logits, then the softmax and the weighted sum. The samples are
  // independent, unlike the steps of an online softmax, so the gathers, dots and
  // exps of different samples overlap. A sample outside every map has a zero
  // key (logit 0) and a zero value.
  at::parallel_for(0, tasks, grain_for(LP * 4 * (Dk + Dv)), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> q(Dk), samples(LP * Dk), logits(LP), acc(Dv);
    pipelined_tasks<acc_t>(
        begin, end, lv, LP, [&](int64_t t) { return loc + t * LP * 2; },
        [&](int64_t t, const TaskCorners<acc_t>& corners) {
          corners.prefetch(rows.keys(t), Dk);
          if (key) corners.prefetch(rows.values(t), Dv);
        },
        [&](int64_t t, const TaskCorners<acc_t>& corners) {
          const HeadRows<scalar_t> v_rows = rows.values(t), k_rows = rows.keys(t);
          to_acc(query + t * Dk, q.data(), Dk);
          acc_t max_logit = -std::numeric_limits<acc_t>::infinity();
          for (int64_t i = 0; i < LP; ++i) {
            acc_t* sample = samples.data() + i * Dk;
            if (corners.hit(i)) {
              logits[i] = scale * gather_dot(corners[i], k_rows.base, k_rows.row_stride, Dk, q.data(), sample);
            } else {
              std::fill(sample, sample + Dk, acc_t(0));
              logits[i] = 0;
            }
            max_logit = std::max(max_logit, logits[i]);
          }
          acc_t sum = 0;
          for (int64_t i = 0; i < LP; ++i) {
            logits[i] = std::exp(logits[i] - max_logit);
            sum += logits[i];
          }
          std::fill(acc.begin(), acc.end(), acc_t(0));
          for (int64_t i = 0; i < LP; ++i) {
            if (!corners.hit(i)) continue;
            if (key) {  // separate values: accumulate their corners directly
              const BilinearCorners<acc_t>& c = corners[i];
              for (int k = 0; k < 4; ++k) {
                if (c.index[k] >= 0) {
                  axpy(logits[i] * c.weight[k], v_rows.base + c.index[k] * v_rows.row_stride, acc.data(), Dv);
                }
              }
            } else {  // key = value: the key sample is the value sample
              axpy(logits[i], samples.data() + i * Dk, acc.data(), Dv);
            }
          }
          scalar_t* out = output + t * Dv;
          const acc_t inv_sum = acc_t(1) / sum;
          for (int64_t d = 0; d < Dv; ++d) out[d] = static_cast<scalar_t>(acc[d] * inv_sum);
          logsumexp[t] = max_logit + std::log(sum);
        });
  });
}

template <typename scalar_t, typename acc_t, int64_t kDim>
void msda_forward_kernel(
    const SamplingSizes& s,
    const Levels& lv,
    const scalar_t* value,
    const acc_t* loc,
    const acc_t* weights,
    scalar_t* output) {
  const int64_t Dv = kDim > 0 ? kDim : s.value_dim, LP = s.num_levels * s.num_points;
  const int64_t tasks = s.batch * s.num_query * s.num_heads;
  const TaskRows<scalar_t> rows{s, value, nullptr, Dv, Dv};
  at::parallel_for(0, tasks, grain_for(LP * 4 * Dv), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> acc(Dv);
    pipelined_tasks<acc_t>(
        begin, end, lv, LP, [&](int64_t t) { return loc + t * LP * 2; },
        [&](int64_t t, const TaskCorners<acc_t>& corners) { corners.prefetch(rows.values(t), Dv); },
        [&](int64_t t, const TaskCorners<acc_t>& corners) {
          const HeadRows<scalar_t> v_rows = rows.values(t);
          const acc_t* tw = weights + t * LP;
          std::fill(acc.begin(), acc.end(), acc_t(0));
          for (int64_t i = 0; i < LP; ++i) {
            if (!corners.hit(i)) continue;
            const BilinearCorners<acc_t>& c = corners[i];
            for (int k = 0; k < 4; ++k) {
              if (c.index[k] >= 0) axpy(tw[i] * c.weight[k], v_rows.base + c.index[k] * v_rows.row_stride, acc.data(), Dv);
            }
          }
          scalar_t* out = output + t * Dv;
          for (int64_t d = 0; d < Dv; ++d) out[d] = static_cast<scalar_t>(acc[d]);
        });
  });
}

// ---------------------------------------------------------------- backward

// Phase 2, shared by KDA and MSDA:
//   grad_value[idx] += w * value_coef * grad_output       (per sample corner)
//   grad_key[idx]   += w * key_coef   * query             (KDA only)
// grad_key may alias grad_value (shared key), in which case Dk == Dv. One task
// per (batch, value head, channel block): no two tasks write the same element.
template <typename scalar_t, typename acc_t>
void scatter_value_key_grads(
    const SamplingSizes& s,
    const Levels& lv,
    const acc_t* loc,
    const acc_t* value_coef,
    const scalar_t* grad_output,
    acc_t* grad_value,
    const acc_t* key_coef,  // nullptr for MSDA
    const scalar_t* query,
    acc_t* grad_key) {
  const int64_t M = s.num_heads, Mv = s.value_heads, S = s.num_value, Nq = s.num_query;
  const int64_t Dk = s.key_dim, Dv = s.value_dim, LP = s.num_levels * s.num_points;
  const int64_t widest = key_coef ? std::max(Dk, Dv) : Dv;
  const int64_t blocks = (widest + kChannelBlock - 1) / kChannelBlock;
  const int64_t heads_per_value_head = Mv == 1 ? M : 1;
  at::parallel_for(0, s.batch * Mv * blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t block = task % blocks;
      const int64_t vh = (task / blocks) % Mv;
      const int64_t b = task / blocks / Mv;
      const int64_t c0 = block * kChannelBlock;
      const int64_t v_end = std::min(Dv, c0 + kChannelBlock);
      const int64_t k_end = std::min(Dk, c0 + kChannelBlock);
      acc_t* const gv_base = grad_value + (b * S * Mv + vh) * Dv + c0;
      acc_t* const gk_base = key_coef ? grad_key + (b * S * Mv + vh) * Dk + c0 : nullptr;
      const HeadRows<acc_t> gv_rows{gv_base, Mv * Dv}, gk_rows{gk_base, Mv * Dk};
      // Sub-task u walks the (query, head) pairs that read this value head.
      auto task_of = [&](int64_t u) {
        const int64_t m = Mv == 1 ? u % heads_per_value_head : vh;
        return (b * Nq + u / heads_per_value_head) * M + m;
      };
      pipelined_tasks<acc_t>(
          0, Nq * heads_per_value_head, lv, LP, [&](int64_t u) { return loc + task_of(u) * LP * 2; },
          [&](int64_t, const TaskCorners<acc_t>& corners) {
            corners.prefetch(gv_rows, v_end - c0, true);
            if (key_coef) corners.prefetch(gk_rows, k_end - c0, true);
          },
          [&](int64_t u, const TaskCorners<acc_t>& corners) {
            const int64_t t = task_of(u);
            const scalar_t* g = grad_output + t * Dv + c0;
            const scalar_t* qv = query ? query + t * Dk + c0 : nullptr;
            for (int64_t i = 0; i < LP; ++i) {
              if (!corners.hit(i)) continue;
              const BilinearCorners<acc_t>& c = corners[i];
              const acc_t vc = value_coef[t * LP + i];
              const acc_t kc = key_coef ? key_coef[t * LP + i] : acc_t(0);
              for (int k = 0; k < 4; ++k) {
                if (c.index[k] < 0) continue;
                axpy(c.weight[k] * vc, g, gv_base + c.index[k] * gv_rows.row_stride, v_end - c0);
                if (key_coef) {
                  axpy(c.weight[k] * kc, qv, gk_base + c.index[k] * gk_rows.row_stride, k_end - c0);
                }
              }
            }
          });
    }
  });
}

template <typename scalar_t, typename acc_t, int64_t kDim>
void kda_backward_kernel(
    const SamplingSizes& s,
    const Levels& lv,
    const scalar_t* grad_output,
    const scalar_t* query,
    const scalar_t* key,  // nullptr: key = value
    const scalar_t* value,
    const acc_t* loc,
    const scalar_t* output,
    const acc_t* logsumexp,
    acc_t scale,
    acc_t* grad_query,
    acc_t* grad_key,  // == grad_value when key is shared
    acc_t* grad_value,
    acc_t* grad_loc) {
  const int64_t Dk = kDim > 0 ? kDim : s.key_dim, Dv = kDim > 0 ? kDim : s.value_dim;
  const int64_t LP = s.num_levels * s.num_points;
  const int64_t tasks = s.batch * s.num_query * s.num_heads;
  const TaskRows<scalar_t> rows{s, value, key, Dk, Dv};
  std::vector<acc_t> value_coef(tasks * LP), key_coef(tasks * LP);

  at::parallel_for(0, tasks, grain_for(LP * 8 * (Dk + Dv)), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> q(Dk), g(Dv);
    pipelined_tasks<acc_t>(
        begin, end, lv, LP, [&](int64_t t) { return loc + t * LP * 2; },
        [&](int64_t t, const TaskCorners<acc_t>& corners) {
          corners.prefetch(rows.keys(t), Dk);
          if (key) corners.prefetch(rows.values(t), Dv);
        },
        [&](int64_t t, const TaskCorners<acc_t>& corners) {
          const HeadRows<scalar_t> v_rows = rows.values(t), k_rows = rows.keys(t);
          to_acc(query + t * Dk, q.data(), Dk);
          to_acc(grad_output + t * Dv, g.data(), Dv);
          const acc_t delta = dot(g.data(), output + t * Dv, Dv);  // g . o
          const acc_t lse = logsumexp[t];
          acc_t* dq = grad_query + t * Dk;
          acc_t* dloc = grad_loc + t * LP * 2;
          std::fill(dq, dq + Dk, acc_t(0));
          for (int64_t i = 0; i < LP; ++i) {
            dloc[2 * i] = 0;
            dloc[2 * i + 1] = 0;
            value_coef[t * LP + i] = 0;
            key_coef[t * LP + i] = 0;
            if (!corners.hit(i)) continue;  // zero key and value: no gradient flows
            const BilinearCorners<acc_t>& c = corners[i];
            acc_t qk[4] = {0, 0, 0, 0}, gv[4] = {0, 0, 0, 0};
            acc_t logit = 0, dattn = 0;
            for (int k = 0; k < 4; ++k) {
              if (c.index[k] < 0) continue;
              qk[k] = dot(q.data(), k_rows.base + c.index[k] * k_rows.row_stride, Dk);
              gv[k] = dot(g.data(), v_rows.base + c.index[k] * v_rows.row_stride, Dv);
              logit += c.weight[k] * qk[k];
              dattn += c.weight[k] * gv[k];
            }
            logit *= scale;
            const acc_t attn = std::exp(logit - lse);
            const acc_t dlogit_scaled = scale * attn * (dattn - delta);
            acc_t dx = 0, dy = 0;
            for (int k = 0; k < 4; ++k) {
              if (c.index[k] < 0) continue;
              axpy(dlogit_scaled * c.weight[k], k_rows.base + c.index[k] * k_rows.row_stride, dq, Dk);
              const acc_t through_sample = attn * gv[k] + dlogit_scaled * qk[k];
              dx += c.dweight_dx[k] * through_sample;
              dy += c.dweight_dy[k] * through_sample;
            }
            dloc[2 * i] = dx;
            dloc[2 * i + 1] = dy;
            value_coef[t * LP + i] = attn;
            key_coef[t * LP + i] = dlogit_scaled;
          }
        });
  });

  scatter_value_key_grads<scalar_t, acc_t>(
      s, lv, loc, value_coef.data(), grad_output, grad_value, key_coef.data(), query,
      key ? grad_key : grad_value);
}

template <typename scalar_t, typename acc_t, int64_t kDim>
void msda_backward_kernel(
    const SamplingSizes& s,
    const Levels& lv,
    const scalar_t* grad_output,
    const scalar_t* value,
    const acc_t* loc,
    const acc_t* weights,
    acc_t* grad_value,
    acc_t* grad_loc,
    acc_t* grad_weights) {
  const int64_t Dv = kDim > 0 ? kDim : s.value_dim, LP = s.num_levels * s.num_points;
  const int64_t tasks = s.batch * s.num_query * s.num_heads;
  const TaskRows<scalar_t> rows{s, value, nullptr, Dv, Dv};
  at::parallel_for(0, tasks, grain_for(LP * 4 * Dv), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> g(Dv);
    pipelined_tasks<acc_t>(
        begin, end, lv, LP, [&](int64_t t) { return loc + t * LP * 2; },
        [&](int64_t t, const TaskCorners<acc_t>& corners) { corners.prefetch(rows.values(t), Dv); },
        [&](int64_t t, const TaskCorners<acc_t>& corners) {
          const HeadRows<scalar_t> v_rows = rows.values(t);
          to_acc(grad_output + t * Dv, g.data(), Dv);
          for (int64_t i = 0; i < LP; ++i) {
            acc_t dattn = 0, dx = 0, dy = 0;
            if (corners.hit(i)) {
              const BilinearCorners<acc_t>& c = corners[i];
              for (int k = 0; k < 4; ++k) {
                if (c.index[k] < 0) continue;
                const acc_t gv = dot(g.data(), v_rows.base + c.index[k] * v_rows.row_stride, Dv);
                dattn += c.weight[k] * gv;
                dx += c.dweight_dx[k] * gv;
                dy += c.dweight_dy[k] * gv;
              }
            }
            const acc_t a = weights[t * LP + i];
            grad_weights[t * LP + i] = dattn;
            grad_loc[t * LP * 2 + 2 * i] = a * dx;
            grad_loc[t * LP * 2 + 2 * i + 1] = a * dy;
          }
        });
  });
  scatter_value_key_grads<scalar_t, acc_t>(
      s, lv, loc, weights, grad_output, grad_value, nullptr, nullptr, nullptr);
}

// Calls f(std::integral_constant<int64_t, D>) with D = 32 or 64 when both head
// dims equal it (the fast paths), else D = 0 (any dims, read at run time).
template <typename F>
void dispatch_head_dim(int64_t key_dim, int64_t value_dim, F&& f) {
  if (key_dim == value_dim && value_dim == 32) {
    f(std::integral_constant<int64_t, 32>());
  } else if (key_dim == value_dim && value_dim == 64) {
    f(std::integral_constant<int64_t, 64>());
  } else {
    f(std::integral_constant<int64_t, 0>());
  }
}

// ---------------------------------------------------------------- launchers

template <typename T>
const T* optional_ptr(const std::optional<at::Tensor>& t) {
  return (t.has_value() && t->defined()) ? t->data_ptr<T>() : nullptr;
}

void kda_forward(
    const SamplingSizes& s,
    const Levels& lv,
    const at::Tensor& query,
    const std::optional<at::Tensor>& key,
    const at::Tensor& value,
    const at::Tensor& sampling_locations,
    double scale,
    const at::Tensor& output,
    const at::Tensor& logsumexp) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value.scalar_type(), "kda_forward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    dispatch_head_dim(s.key_dim, s.value_dim, [&](auto dim) {
      kda_forward_kernel<scalar_t, acc_t, decltype(dim)::value>(
          s, lv, query.data_ptr<scalar_t>(), optional_ptr<scalar_t>(key), value.data_ptr<scalar_t>(),
          sampling_locations.data_ptr<acc_t>(), static_cast<acc_t>(scale), output.data_ptr<scalar_t>(),
          logsumexp.data_ptr<acc_t>());
    });
  });
}

void kda_backward(
    const SamplingSizes& s,
    const Levels& lv,
    const at::Tensor& grad_output,
    const at::Tensor& query,
    const std::optional<at::Tensor>& key,
    const at::Tensor& value,
    const at::Tensor& sampling_locations,
    const at::Tensor& output,
    const at::Tensor& logsumexp,
    double scale,
    const at::Tensor& grad_query,
    const at::Tensor& grad_key,
    const at::Tensor& grad_value,
    const at::Tensor& grad_loc) {
  const bool has_key = key.has_value() && key->defined();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value.scalar_type(), "kda_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    dispatch_head_dim(s.key_dim, s.value_dim, [&](auto dim) {
      kda_backward_kernel<scalar_t, acc_t, decltype(dim)::value>(
          s, lv, grad_output.data_ptr<scalar_t>(), query.data_ptr<scalar_t>(), optional_ptr<scalar_t>(key),
          value.data_ptr<scalar_t>(), sampling_locations.data_ptr<acc_t>(), output.data_ptr<scalar_t>(),
          logsumexp.data_ptr<acc_t>(), static_cast<acc_t>(scale), grad_query.data_ptr<acc_t>(),
          has_key ? grad_key.data_ptr<acc_t>() : nullptr, grad_value.data_ptr<acc_t>(),
          grad_loc.data_ptr<acc_t>());
    });
  });
}

void msda_forward(
    const SamplingSizes& s,
    const Levels& lv,
    const at::Tensor& value,
    const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights,
    const at::Tensor& output) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value.scalar_type(), "msda_forward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    dispatch_head_dim(s.value_dim, s.value_dim, [&](auto dim) {
      msda_forward_kernel<scalar_t, acc_t, decltype(dim)::value>(
          s, lv, value.data_ptr<scalar_t>(), sampling_locations.data_ptr<acc_t>(),
          attention_weights.data_ptr<acc_t>(), output.data_ptr<scalar_t>());
    });
  });
}

void msda_backward(
    const SamplingSizes& s,
    const Levels& lv,
    const at::Tensor& grad_output,
    const at::Tensor& value,
    const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights,
    const at::Tensor& grad_value,
    const at::Tensor& grad_loc,
    const at::Tensor& grad_weights) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value.scalar_type(), "msda_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    dispatch_head_dim(s.value_dim, s.value_dim, [&](auto dim) {
      msda_backward_kernel<scalar_t, acc_t, decltype(dim)::value>(
          s, lv, grad_output.data_ptr<scalar_t>(), value.data_ptr<scalar_t>(),
          sampling_locations.data_ptr<acc_t>(), attention_weights.data_ptr<acc_t>(),
          grad_value.data_ptr<acc_t>(), grad_loc.data_ptr<acc_t>(), grad_weights.data_ptr<acc_t>());
    });
  });
}

} // namespace LITE_DETR_CPU_ISA
