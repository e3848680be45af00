// Fused QAT kernels (CPU, float32): fake quantization with the clipped straight-through
// estimator, the EMA percentile's order statistics, and the quantizers' qparams updates.
//
// The same float operations, in the same order, as the PyTorch path of
// fqn_det/quant/functional.py (x / s + zp, round half to even, clamp, (q - zp) * s;
// calc_qparams) and fake_quantize.py, so the results are bit for bit those of that path;
// only the number of passes over memory changes (one forward pass instead of seven, one
// backward pass instead of two) and the number of calls (one qparams update instead of
// about ten small tensor operations).
// Built at first use by fqn_det/quant/fused.py with torch.utils.cpp_extension
// (-ffp-contract=off: no fused multiply-add may change a rounding).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <tuple>
#include <vector>

namespace {

constexpr int64_t kGrain = 16384;

// Per tensor (one scale) or per channel along dim 0 of a contiguous tensor (one scale
// per slice x[c]); scale float32, zero_point int32, as the quantizers keep them.
std::tuple<at::Tensor, at::Tensor> fake_quant_forward(const at::Tensor& x, const at::Tensor& scale,
                                                      const at::Tensor& zero_point, int64_t qmin, int64_t qmax,
                                                      bool need_mask) {
  TORCH_CHECK(x.device().is_cpu() && x.scalar_type() == at::kFloat, "fused fake quant: float32 CPU tensors only");
  TORCH_CHECK(x.is_non_overlapping_and_dense(), "fused fake quant: dense tensors only");
  TORCH_CHECK(scale.scalar_type() == at::kFloat && zero_point.scalar_type() == at::kInt &&
              scale.numel() == zero_point.numel() && scale.is_contiguous() && zero_point.is_contiguous(),
              "fused fake quant: float32 scale and int32 zero-point of the same size");
  const int64_t channels = scale.numel(), numel = x.numel();
  TORCH_CHECK(channels == 1 || (x.dim() >= 1 && x.size(0) == channels && x.is_contiguous()),
              "fused fake quant: one scale, or one per slice along dim 0 of a contiguous tensor");
  at::Tensor out = at::empty_like(x);
  at::Tensor mask = need_mask ? at::empty_like(x, x.options().dtype(at::kBool))
                              : at::empty({0}, x.options().dtype(at::kBool));
  const int64_t inner = channels == 1 ? numel : numel / channels;
  const float lo = static_cast<float>(qmin), hi = static_cast<float>(qmax);
  const float* px = x.data_ptr<float>();
  const float* ps = scale.data_ptr<float>();
  const int32_t* pz = zero_point.data_ptr<int32_t>();
  float* po = out.data_ptr<float>();
  uint8_t* pm = need_mask ? reinterpret_cast<uint8_t*>(mask.data_ptr<bool>()) : nullptr;
  at::parallel_for(0, numel, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end;) {
      const int64_t c = b / inner;
      const int64_t e = std::min(end, (c + 1) * inner);
      const float s = ps[c], zp = static_cast<float>(pz[c]);
      const float* __restrict__ xi = px;
      float* __restrict__ oi = po;
      uint8_t* __restrict__ mi = pm;
      if (mi) {
        for (int64_t i = b; i < e; ++i) {
          const float q = __builtin_nearbyintf(xi[i] / s + zp);
          float v = q < lo ? lo : q;
          v = v > hi ? hi : v;
          mi[i] = v == q;  // inside the range: the gradient passes
          oi[i] = (v - zp) * s;
        }
      } else {
        for (int64_t i = b; i < e; ++i) {
          const float q = __builtin_nearbyintf(xi[i] / s + zp);
          float v = q < lo ? lo : q;
          v = v > hi ? hi : v;
          oi[i] = (v - zp) * s;
        }
      }
      b = e;
    }
  });
  return {out, mask};
}

at::Tensor fake_quant_backward(const at::Tensor& grad, const at::Tensor& mask) {
  TORCH_CHECK(grad.device().is_cpu() && grad.scalar_type() == at::kFloat, "fused fake quant: float32 CPU tensors only");
  TORCH_CHECK(grad.sizes() == mask.sizes() && grad.strides() == mask.strides() && grad.is_non_overlapping_and_dense(),
              "fused fake quant backward: the gradient must have the mask's layout");
  at::Tensor out = at::empty_like(grad);
  const float* pg = grad.data_ptr<float>();
  const uint8_t* pm = reinterpret_cast<const uint8_t*>(mask.data_ptr<bool>());
  float* po = out.data_ptr<float>();
  at::parallel_for(0, grad.numel(), kGrain, [&](int64_t b, int64_t e) {
    const float* __restrict__ gi = pg;
    const uint8_t* __restrict__ mi = pm;
    float* __restrict__ oi = po;
    for (int64_t i = b; i < e; ++i) oi[i] = gi[i] * static_cast<float>(mi[i]);  // grad * mask, as in PyTorch
  });
  return out;
}

// The k_lo smallest and k_hi largest of the sample elements [begin, end) (sample element i
// is px[i * step]), appended unordered to `low` and `high`: two bounded heaps in one pass.
// Blocks that cannot change either heap (all values between the two heap tops) are skipped
// after a min/max the compiler vectorizes; with 0.1 % tails that is nearly every block.
void select_tails(const float* px, int64_t step, int64_t begin, int64_t end, int64_t k_lo, int64_t k_hi,
                  std::vector<float>& low_out, std::vector<float>& high_out) {
  const int64_t n = end - begin;
  if (n <= std::max(k_lo, k_hi)) {  // a short range: all of it is a candidate
    for (int64_t i = begin; i < end; ++i) {
      low_out.push_back(px[i * step]);
      high_out.push_back(px[i * step]);
    }
    return;
  }
  // max-heap of the k_lo smallest so far (front: the largest of them) and min-heap of the
  // k_hi largest so far (front: the smallest of them)
  std::vector<float> low(k_lo), high(k_hi);
  for (int64_t i = 0; i < k_lo; ++i) low[i] = px[(begin + i) * step];
  for (int64_t i = 0; i < k_hi; ++i) high[i] = px[(begin + i) * step];
  std::make_heap(low.begin(), low.end());
  std::make_heap(high.begin(), high.end(), std::greater<float>());
  auto offer = [&](float v, int64_t i) {  // i: position in the range
    if (i >= k_lo && v < low.front()) {
      std::pop_heap(low.begin(), low.end());
      low.back() = v;
      std::push_heap(low.begin(), low.end());
    }
    if (i >= k_hi && v > high.front()) {
      std::pop_heap(high.begin(), high.end(), std::greater<float>());
      high.back() = v;
      std::push_heap(high.begin(), high.end(), std::greater<float>());
    }
  };
  constexpr int64_t kBlock = 256;
  const int64_t head = std::max(k_lo, k_hi);
  for (int64_t i = 0; i < head; ++i) offer(px[(begin + i) * step], i);
  float buf[kBlock];
  for (int64_t b = head; b < n; b += kBlock) {
    const int64_t m = std::min(kBlock, n - b);
    const float* src = px + (begin + b) * step;
    if (step != 1) {
      for (int64_t j = 0; j < m; ++j) buf[j] = src[j * step];
      src = buf;
    }
    float lo = src[0], hi = src[0];
    for (int64_t j = 0; j < m; ++j) {
      lo = src[j] < lo ? src[j] : lo;
      hi = src[j] > hi ? src[j] : hi;
    }
    if (lo < low.front() || hi > high.front()) {
      for (int64_t j = 0; j < m; ++j) offer(src[j], b + j);
    }
  }
  low_out.insert(low_out.end(), low.begin(), low.end());
  high_out.insert(high_out.end(), high.begin(), high.end());
}

// [k_lo-th smallest, k_hi-th largest, all finite] of x's elements 0, step, 2 * step, ... in
// memory order: the order statistics torch.topk selects from that strided sample, without
// copying the sample. Each thread selects the tails of its part of the sample; the union of
// those holds the global tails, whose k-th elements nth_element then picks. With
// check_finite, the third value is 1 when every element of x (not only the sample) is
// finite, else 0 (an integer test of the exponent bits, which vectorizes).
at::Tensor strided_order_stats(const at::Tensor& x, int64_t step, int64_t k_lo, int64_t k_hi, bool check_finite) {
  TORCH_CHECK(x.device().is_cpu() && x.scalar_type() == at::kFloat, "order statistics: float32 CPU tensors only");
  TORCH_CHECK(x.is_non_overlapping_and_dense(), "order statistics: dense tensors only");
  TORCH_CHECK(step >= 1, "order statistics: step must be >= 1");
  const int64_t n = (x.numel() + step - 1) / step;
  TORCH_CHECK(1 <= k_lo && k_lo <= n && 1 <= k_hi && k_hi <= n, "order statistics: k out of range");
  const float* px = x.data_ptr<float>();
  const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), n / 8192));
  std::vector<std::vector<float>> lows(parts), highs(parts);
  uint32_t worst = 0;  // the largest exponent field: all ones only for inf and NaN
  if (check_finite) {
    const uint32_t* bits = reinterpret_cast<const uint32_t*>(px);
    worst = at::parallel_reduce(
        0, x.numel(), 4 * kGrain, 0u,
        [&](int64_t b, int64_t e, uint32_t w) {
          for (int64_t i = b; i < e; ++i) {
            const uint32_t expo = bits[i] & 0x7f800000u;
            w = expo > w ? expo : w;
          }
          return w;
        },
        [](uint32_t a, uint32_t b) { return a > b ? a : b; });
  }
  at::parallel_for(0, parts, 1, [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p) {
      lows[p].reserve(k_lo);
      highs[p].reserve(k_hi);
      select_tails(px, step, n * p / parts, n * (p + 1) / parts, k_lo, k_hi, lows[p], highs[p]);
    }
  });
  std::vector<float> low, high;
  for (int64_t p = 0; p < parts; ++p) {
    low.insert(low.end(), lows[p].begin(), lows[p].end());
    high.insert(high.end(), highs[p].begin(), highs[p].end());
  }
  std::nth_element(low.begin(), low.begin() + (k_lo - 1), low.end());
  std::nth_element(high.begin(), high.begin() + (k_hi - 1), high.end(), std::greater<float>());
  at::Tensor out = at::empty({3}, x.options());
  out.data_ptr<float>()[0] = low[k_lo - 1];
  out.data_ptr<float>()[1] = high[k_hi - 1];
  out.data_ptr<float>()[2] = worst == 0x7f800000u ? 0.0f : 1.0f;
  return out;
}

// calc_qparams of fqn_det/quant/functional.py for one range, with its float32 operations in
// its order: clamp to contain 0, scale = (max - min) / (qmax - qmin) (symmetric: max(|min|,
// |max|) / qmax), clamped to >= FLT_EPSILON, zero-point = clamp(round(qmin - min / scale)).
// NaN passes through the clamps, as in torch.clamp (every comparison with NaN is false).
inline float clamp_max_nan(float v, float m) { return v > m ? m : v; }
inline float clamp_min_nan(float v, float m) { return v < m ? m : v; }

inline void range_qparams(float mn, float mx, int64_t qmin, int64_t qmax, bool symmetric, float* scale,
                          int32_t* zero_point) {
  const float min_neg = clamp_max_nan(mn, 0.0f), max_pos = clamp_min_nan(mx, 0.0f);
  const float eps = std::numeric_limits<float>::epsilon();
  if (symmetric) {
    const float neg = -min_neg;
    // torch.maximum propagates NaN
    const float m = std::isnan(neg) || std::isnan(max_pos) ? std::numeric_limits<float>::quiet_NaN()
                                                           : (neg > max_pos ? neg : max_pos);
    *scale = clamp_min_nan(m / static_cast<float>(qmax), eps);
    *zero_point = 0;
    return;
  }
  const float s = clamp_min_nan((max_pos - min_neg) / static_cast<float>(qmax - qmin), eps);
  float z = __builtin_nearbyintf(static_cast<float>(qmin) - min_neg / s);
  z = clamp_max_nan(clamp_min_nan(z, static_cast<float>(qmin)), static_cast<float>(qmax));
  *scale = s;
  *zero_point = static_cast<int32_t>(z);  // NaN: what torch's float-to-int conversion gives on this CPU
}

void check_qparams_buffers(const at::Tensor& scale, const at::Tensor& zero_point) {
  TORCH_CHECK(scale.device().is_cpu() && scale.scalar_type() == at::kFloat && scale.is_contiguous() &&
              zero_point.device().is_cpu() && zero_point.scalar_type() == at::kInt &&
              zero_point.is_contiguous() && scale.numel() == zero_point.numel(),
              "qparams: contiguous float32 scale and int32 zero-point buffers of the same size on the CPU");
}

// The weight quantizer's range and qparams in one call: min and max of each slice along
// dim 0 of a contiguous w (of all of w when the buffers hold one value), NaN propagating as
// in torch.amin/amax, then range_qparams, written into the scale and zero-point buffers.
void minmax_qparams_(const at::Tensor& w, at::Tensor scale, at::Tensor zero_point, int64_t qmin, int64_t qmax,
                     bool symmetric) {
  TORCH_CHECK(w.device().is_cpu() && w.scalar_type() == at::kFloat && w.is_contiguous() && w.numel() > 0,
              "minmax qparams: a non-empty contiguous float32 CPU tensor");
  check_qparams_buffers(scale, zero_point);
  const int64_t rows = scale.numel();
  TORCH_CHECK(rows == 1 || (w.dim() >= 1 && w.size(0) == rows), "minmax qparams: one range, or one per slice along dim 0");
  const int64_t inner = w.numel() / rows;
  const float* pw = w.data_ptr<float>();
  float* ps = scale.data_ptr<float>();
  int32_t* pz = zero_point.data_ptr<int32_t>();
  at::parallel_for(0, rows, std::max<int64_t>(1, kGrain / std::max<int64_t>(inner, 1)), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const float* __restrict__ row = pw + r * inner;
      float lo = row[0], hi = row[0];
      bool nan = false;
      for (int64_t i = 0; i < inner; ++i) {
        const float v = row[i];
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
        nan |= v != v;
      }
      if (nan) lo = hi = std::numeric_limits<float>::quiet_NaN();
      range_qparams(lo, hi, qmin, qmax, symmetric, ps + r, pz + r);
    }
  });
}

// The activation quantizer's EMA step after the batch statistic [lo, hi]: min_val and
// max_val follow torch.lerp (ATen's own kernel, so the same rounding) once initialized and
// take lo and hi otherwise; then scale and zero-point are range_qparams of the new range
// and `initialized` is set. One call instead of about ten small tensor operations.
void ema_qparams_(const at::Tensor& lo, const at::Tensor& hi, at::Tensor min_val, at::Tensor max_val,
                  at::Tensor scale, at::Tensor zero_point, at::Tensor initialized, double momentum, int64_t qmin,
                  int64_t qmax, bool symmetric) {
  check_qparams_buffers(scale, zero_point);
  TORCH_CHECK(scale.numel() == 1 && min_val.numel() == 1 && max_val.numel() == 1 && lo.numel() == 1 &&
              hi.numel() == 1 && initialized.numel() == 1, "EMA qparams: one range");
  for (const at::Tensor* t : std::initializer_list<const at::Tensor*>{&lo, &hi, &min_val, &max_val})
    TORCH_CHECK(t->device().is_cpu() && t->scalar_type() == at::kFloat, "EMA qparams: float32 CPU ranges");
  TORCH_CHECK(initialized.device().is_cpu() && initialized.scalar_type() == at::kByte, "EMA qparams: uint8 flag");
  uint8_t* flag = initialized.data_ptr<uint8_t>();
  if (*flag) {
    min_val.lerp_(lo, momentum);
    max_val.lerp_(hi, momentum);
  } else {
    min_val.copy_(lo);
    max_val.copy_(hi);
  }
  range_qparams(*min_val.data_ptr<float>(), *max_val.data_ptr<float>(), qmin, qmax, symmetric,
                scale.data_ptr<float>(), zero_point.data_ptr<int32_t>());
  *flag = 1;
}

}  // namespace

TORCH_LIBRARY(fqn_det, m) {
  m.def("fake_quant_forward(Tensor x, Tensor scale, Tensor zero_point, int qmin, int qmax, bool need_mask)"
        " -> (Tensor, Tensor)");
  m.def("fake_quant_backward(Tensor grad, Tensor mask) -> Tensor");
  m.def("strided_order_stats(Tensor x, int step, int k_lo, int k_hi, bool check_finite) -> Tensor");
  m.def("minmax_qparams_(Tensor w, Tensor(a!) scale, Tensor(b!) zero_point, int qmin, int qmax, bool symmetric) -> ()");
  m.def("ema_qparams_(Tensor lo, Tensor hi, Tensor(a!) min_val, Tensor(b!) max_val, Tensor(c!) scale,"
        " Tensor(d!) zero_point, Tensor(e!) initialized, float momentum, int qmin, int qmax, bool symmetric) -> ()");
}

TORCH_LIBRARY_IMPL(fqn_det, CPU, m) {
  m.impl("fake_quant_forward", &fake_quant_forward);
  m.impl("fake_quant_backward", &fake_quant_backward);
  m.impl("strided_order_stats", &strided_order_stats);
  m.impl("minmax_qparams_", &minmax_qparams_);
  m.impl("ema_qparams_", &ema_qparams_);
}
