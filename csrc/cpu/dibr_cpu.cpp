// CPU kernels of the dibr_ros operators (schemas in csrc/dibr_ops.cpp, math in csrc/dibr_common.h).
//
// Work is split into tasks (batch element, band of image rows) run with at::parallel_for. Inside a task
// the loops are face-major: faces in index order, each visiting only the pixels of its bounding box
// (grown by boxlen for the soft mask) within the band. Visiting faces in index order keeps Kaolin's
// semantics: the strict z test lets the first face win ties, and the first knum faces whose grown box
// holds a pixel are its soft-mask candidates, multiplied in index order.
//
// Backward passes accumulate per-face gradients in double, in one buffer per task, summed over the
// bands of a batch element in a fixed order afterwards. The split depends only on (B, H), so gradients
// are deterministic and independent of the thread count. The soft-mask candidates are recomputed in the
// backward pass instead of being saved (saved list is empty), which keeps memory O(B*F).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <tuple>
#include <vector>

#include "dibr_common.h"

namespace dibr_ros {
namespace {

// At least this many tasks (bands are added when the batch is small) so that all cores get work.
constexpr int64_t kMinTasks = 16;

struct Split {
  int64_t height, bands;
  Split(int64_t batch, int64_t h)
      : height(h), bands(std::min<int64_t>(h, std::max<int64_t>(1, (kMinTasks + batch - 1) / batch))) {}
  int64_t b(int64_t t) const { return t / bands; }
  int64_t row0(int64_t t) const { return (t % bands) * height / bands; }
  int64_t row1(int64_t t) const { return (t % bands + 1) * height / bands; }
};

template <typename T>
struct Grid {
  int64_t height, width;
  float mf;  // multiplier as Kaolin's kernels see it (C float)
  T ms;      // multiplier in the data type, for scaling vertices
  std::vector<T> xs, ys;
  Grid(int64_t h, int64_t w, double multiplier)
      : height(h), width(w), mf(static_cast<float>(multiplier)), ms(static_cast<T>(multiplier)), xs(w), ys(h) {
    for (int64_t c = 0; c < w; c++) xs[c] = static_cast<T>(pixel_x(static_cast<int>(c), static_cast<int>(w), mf));
    for (int64_t r = 0; r < h; r++) ys[r] = static_cast<T>(pixel_y(static_cast<int>(r), static_cast<int>(h), mf));
  }

  // Columns [a, b] whose centre may lie in [lo, hi) (one pixel of slack; callers test exactly).
  bool cols(T lo, T hi, int64_t& a, int64_t& b) const {
    if (!std::isfinite(lo) || !std::isfinite(hi)) return false;
    const double w = static_cast<double>(width);
    double ca = std::floor((lo * w / mf + w - 1) / 2) - 1;
    double cb = std::ceil((hi * w / mf + w - 1) / 2) + 1;
    ca = std::max(ca, 0.0);
    cb = std::min(cb, w - 1);
    if (ca > cb) return false;
    a = static_cast<int64_t>(ca);
    b = static_cast<int64_t>(cb);
    return true;
  }

  // Rows [a, b] within [r0, r1) whose centre may lie in [lo, hi); y decreases with the row.
  bool rows(T lo, T hi, int64_t r0, int64_t r1, int64_t& a, int64_t& b) const {
    if (!std::isfinite(lo) || !std::isfinite(hi)) return false;
    const double h = static_cast<double>(height);
    double ra = std::floor((h - 1 - hi * h / mf) / 2) - 1;
    double rb = std::ceil((h - 1 - lo * h / mf) / 2) + 1;
    ra = std::max(ra, static_cast<double>(r0));
    rb = std::min(rb, static_cast<double>(r1 - 1));
    if (ra > rb) return false;
    a = static_cast<int64_t>(ra);
    b = static_cast<int64_t>(rb);
    return true;
  }
};

template <typename T>
inline void load_scaled(const T* fvi, T ms, T* v) {
  for (int k = 0; k < 6; k++) v[k] = fvi[k] * ms;
}

template <typename T>
inline void bbox(const T* v, T& xmin, T& ymin, T& xmax, T& ymax) {
  xmin = std::min(std::min(v[0], v[2]), v[4]);
  xmax = std::max(std::max(v[0], v[2]), v[4]);
  ymin = std::min(std::min(v[1], v[3]), v[5]);
  ymax = std::max(std::max(v[1], v[3]), v[5]);
}

// ------------------------------------------------------------------------------------------------
// Rasterization forward: per pixel the valid face with the largest interpolated z.
template <typename T>
void rasterize_task(const Grid<T>& g, const T* fvz, const T* fvi, const T* feat, const T* nz, int64_t F,
                    int64_t D, float eps, int64_t b, int64_t r0, int64_t r1, T* out_feat, int64_t* out_idx,
                    T* out_w) {
  const int64_t W = g.width;
  const int64_t npix = (r1 - r0) * W;
  std::vector<T> zbuf(npix, -std::numeric_limits<T>::infinity());
  std::vector<int64_t> best(npix, -1);
  std::vector<T> bw(3 * npix);
  for (int64_t f = 0; f < F; f++) {
    const int64_t bf = b * F + f;
    if (!(nz[bf] >= 0)) continue;  // back-facing (or NaN) faces are not drawn
    T v[6], xmin, ymin, xmax, ymax;
    load_scaled(fvi + bf * 6, g.ms, v);
    bbox(v, xmin, ymin, xmax, ymax);
    int64_t ra, rb, ca, cb;
    if (!g.rows(ymin, ymax, r0, r1, ra, rb) || !g.cols(xmin, xmax, ca, cb)) continue;
    const T az = fvz[bf * 3], bz = fvz[bf * 3 + 1], cz = fvz[bf * 3 + 2];
    for (int64_t r = ra; r <= rb; r++) {
      const T y0 = g.ys[r];
      if (y0 < ymin || y0 >= ymax) continue;
      for (int64_t c = ca; c <= cb; c++) {
        const T x0 = g.xs[c];
        if (x0 < xmin || x0 >= xmax) continue;
        T e0, e1, e2;
        edge_functions(v, x0, y0, e0, e1, e2);
        const T norm = barycentric_norm(e0, e1, e2, eps);
        const T w0 = e0 / norm, w1 = e1 / norm, w2 = e2 / norm;
        if (w0 < 0 || w1 < 0 || w2 < 0) continue;
        const T z0 = w0 * az + w1 * bz + w2 * cz;
        const int64_t p = (r - r0) * W + c;
        if (z0 <= zbuf[p]) continue;
        zbuf[p] = z0;
        best[p] = f;
        bw[3 * p] = w0;
        bw[3 * p + 1] = w1;
        bw[3 * p + 2] = w2;
      }
    }
  }
  const int64_t base = (b * g.height + r0) * W;
  for (int64_t p = 0; p < npix; p++) {
    const int64_t f = best[p];
    out_idx[base + p] = f;
    if (f < 0) continue;
    const T w0 = bw[3 * p], w1 = bw[3 * p + 1], w2 = bw[3 * p + 2];
    out_w[3 * (base + p)] = w0;
    out_w[3 * (base + p) + 1] = w1;
    out_w[3 * (base + p) + 2] = w2;
    const T* c = feat + (b * F + f) * 3 * D;
    T* o = out_feat + (base + p) * D;
    for (int64_t d = 0; d < D; d++) o[d] = w0 * c[d] + w1 * c[D + d] + w2 * c[2 * D + d];
  }
}

// Rasterization backward of one task into acc_v (F, 6) and acc_f (F, 3, D), unscaled coordinates.
template <typename T>
void rasterize_backward_task(const Grid<T>& g, const T* grad, const int64_t* face_idx, const T* weights,
                             const T* fvi, const T* feat, int64_t F, int64_t D, float eps, int64_t b,
                             int64_t r0, int64_t r1, double* acc_v, double* acc_f) {
  const int64_t W = g.width;
  for (int64_t r = r0; r < r1; r++) {
    for (int64_t c = 0; c < W; c++) {
      const int64_t p = (b * g.height + r) * W + c;
      const int64_t f = face_idx[p];
      if (f < 0) continue;
      const T* gp = grad + p * D;
      const T* w = weights + 3 * p;
      const T* col = feat + (b * F + f) * 3 * D;
      double* af = acc_f + f * 3 * D;
      T gw[3] = {0, 0, 0};
      for (int i = 0; i < 3; i++) {
        for (int64_t d = 0; d < D; d++) {
          af[i * D + d] += static_cast<double>(w[i] * gp[d]);
          gw[i] += gp[d] * col[i * D + d];
        }
      }
      if (gw[0] == 0 && gw[1] == 0 && gw[2] == 0) continue;
      T v[6], gv[6];
      load_scaled(fvi + (b * F + f) * 6, g.ms, v);
      barycentric_grad(v, g.xs[c], g.ys[r], eps, gw, gv);
      double* avp = acc_v + f * 6;
      // d/d(unscaled) = multiplier * d/d(scaled).
      for (int k = 0; k < 6; k++) avp[k] += static_cast<double>(gv[k]) * g.ms;
    }
  }
}

// ------------------------------------------------------------------------------------------------
// Soft mask: visit(p_local, face, prob, kind, k) for each candidate face of each background pixel of a
// band, in face-index order, at most knum per pixel. cnt (npix) is zeroed by the caller.
struct SoftParams {
  double sigmainv, boxlen, multiplier;
  int64_t knum;
};

template <typename T, typename Visit>
void soft_candidates(const Grid<T>& g, const T* fvi, const int64_t* face_idx, int64_t F, const SoftParams& sp,
                     int64_t b, int64_t r0, int64_t r1, int32_t* cnt, Visit&& visit) {
  const int64_t W = g.width;
  const T margin = static_cast<T>(sp.boxlen * sp.multiplier);
  const float sig = static_cast<float>(sp.sigmainv);
  const int32_t knum = static_cast<int32_t>(sp.knum);
  const int64_t* fmap = face_idx + b * g.height * W;
  for (int64_t f = 0; f < F; f++) {
    T v[6], xmin, ymin, xmax, ymax;
    load_scaled(fvi + (b * F + f) * 6, g.ms, v);
    bbox(v, xmin, ymin, xmax, ymax);
    xmin -= margin;
    ymin -= margin;
    xmax += margin;
    ymax += margin;
    int64_t ra, rb, ca, cb;
    if (!g.rows(ymin, ymax, r0, r1, ra, rb) || !g.cols(xmin, xmax, ca, cb)) continue;
    for (int64_t r = ra; r <= rb; r++) {
      const T y0 = g.ys[r];
      if (y0 < ymin || y0 >= ymax) continue;
      for (int64_t c = ca; c <= cb; c++) {
        const int64_t p = (r - r0) * W + c;
        if (fmap[r * W + c] >= 0 || cnt[p] >= knum) continue;
        const T x0 = g.xs[c];
        if (x0 < xmin || x0 >= xmax) continue;
        int kind;
        const T d2 = boundary_dist2(v, x0, y0, g.mf, kind);
        visit(p, f, soft_prob(d2, sig, g.mf), kind, cnt[p]);
        cnt[p]++;
      }
    }
  }
}

template <typename T>
void soft_mask_task(const Grid<T>& g, const T* fvi, const int64_t* face_idx, int64_t F, const SoftParams& sp,
                    int64_t b, int64_t r0, int64_t r1, T* out) {
  const int64_t W = g.width;
  const int64_t npix = (r1 - r0) * W;
  std::vector<int32_t> cnt(npix, 0);
  std::vector<T> keep(npix, static_cast<T>(1));  // prod (1 - prob), formed as Kaolin does (double factor)
  soft_candidates(g, fvi, face_idx, F, sp, b, r0, r1, cnt.data(), [&](int64_t p, int64_t, T prob, int, int32_t) {
    keep[p] = static_cast<T>(keep[p] * (1.0 - prob));
  });
  const int64_t base = (b * g.height + r0) * W;
  for (int64_t p = 0; p < npix; p++) {
    out[base + p] = face_idx[base + p] >= 0 ? static_cast<T>(1) : static_cast<T>(1.0 - keep[p]);
  }
}

template <typename T>
void soft_mask_backward_task(const Grid<T>& g, const T* grad, const T* fvi, const int64_t* face_idx, int64_t F,
                             const SoftParams& sp, int64_t b, int64_t r0, int64_t r1, double* acc_v) {
  const int64_t W = g.width;
  const int64_t npix = (r1 - r0) * W;
  const int64_t K = sp.knum;
  std::vector<int32_t> cnt(npix, 0);
  std::vector<T> prob(npix * K);
  std::vector<int32_t> face(npix * K);
  std::vector<uint8_t> kind(npix * K);
  soft_candidates(g, fvi, face_idx, F, sp, b, r0, r1, cnt.data(),
                  [&](int64_t p, int64_t f, T pr, int kd, int32_t k) {
                    prob[p * K + k] = pr;
                    face[p * K + k] = static_cast<int32_t>(f);
                    kind[p * K + k] = static_cast<uint8_t>(kd);
                  });
  // d soft / d prob_k = prod_{j != k} (1 - prob_j); d prob / d d2_scaled = -prob * sigmainv / M^2, and
  // d/d(unscaled) = M * d/d(scaled), hence the factor -sigmainv / M.
  const double coef = -static_cast<double>(static_cast<float>(sp.sigmainv)) / g.mf;
  std::vector<double> suffix(K + 1);
  const int64_t base = (b * g.height + r0) * W;
  for (int64_t p = 0; p < npix; p++) {
    const int32_t n = cnt[p];
    const double gp = static_cast<double>(grad[base + p]);
    if (n == 0 || gp == 0) continue;
    const T y0 = g.ys[r0 + p / W], x0 = g.xs[p % W];
    suffix[n] = 1.0;
    for (int32_t k = n - 1; k >= 0; k--) suffix[k] = suffix[k + 1] * (1.0 - static_cast<double>(prob[p * K + k]));
    double prefix = 1.0;
    for (int32_t k = 0; k < n; k++) {
      const double pr = static_cast<double>(prob[p * K + k]);
      const T scale = static_cast<T>(coef * gp * prefix * suffix[k + 1] * pr);
      prefix *= 1.0 - pr;
      if (scale == 0) continue;
      const int64_t f = face[p * K + k];
      T v[6], gv[6] = {0, 0, 0, 0, 0, 0};
      load_scaled(fvi + (b * F + f) * 6, g.ms, v);
      boundary_dist2_grad(v, x0, y0, kind[p * K + k], scale, gv);
      double* avp = acc_v + f * 6;
      for (int k6 = 0; k6 < 6; k6++) avp[k6] += static_cast<double>(gv[k6]);
    }
  }
}

// Sums the per-task buffers (tasks, F, K) over the bands of each batch element, in band order.
template <typename T>
void reduce_bands(const std::vector<double>& acc, const Split& s, int64_t B, int64_t FK, T* out) {
  // Cheap (one add per band and entry): a large grain keeps it serial, saving a thread wake-up.
  at::parallel_for(0, B * FK, 1 << 18, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i++) {
      const int64_t b = i / FK, j = i % FK;
      double sum = 0;
      for (int64_t band = 0; band < s.bands; band++) sum += acc[(b * s.bands + band) * FK + j];
      out[i] = static_cast<T>(sum);
    }
  });
}

void check_common(const at::Tensor& fvi) {
  TORCH_CHECK(fvi.device().is_cpu(), "dibr_ros CPU op: expected CPU tensors");
  TORCH_CHECK(fvi.dim() == 4 && fvi.size(2) == 3 && fvi.size(3) == 2,
              "dibr_ros: face_vertices_image must be (B, F, 3, 2)");
}

// ------------------------------------------------------------------------------------------------
std::tuple<at::Tensor, at::Tensor, at::Tensor> rasterize_forward_cpu(
    const at::Tensor& face_vertices_z, const at::Tensor& face_vertices_image, const at::Tensor& face_features,
    const at::Tensor& face_normals_z, int64_t height, int64_t width, double multiplier, double eps) {
  check_common(face_vertices_image);
  TORCH_CHECK(height > 0 && width > 0, "dibr_ros: height and width must be positive");
  const auto fvz = face_vertices_z.contiguous();
  const auto fvi = face_vertices_image.contiguous();
  const auto feat = face_features.contiguous();
  const auto nz = face_normals_z.contiguous();
  const int64_t B = fvi.size(0), F = fvi.size(1), D = feat.size(3);
  TORCH_CHECK(fvz.sizes() == at::IntArrayRef({B, F, 3}) && feat.dim() == 4 && feat.size(0) == B &&
                  feat.size(1) == F && feat.size(2) == 3 && nz.sizes() == at::IntArrayRef({B, F}),
              "dibr_ros: inconsistent input shapes");
  TORCH_CHECK(fvz.scalar_type() == fvi.scalar_type() && feat.scalar_type() == fvi.scalar_type() &&
                  nz.scalar_type() == fvi.scalar_type(),
              "dibr_ros: inputs must share one dtype");
  auto features = at::zeros({B, height, width, D}, fvi.options());
  auto face_idx = at::full({B, height, width}, -1, fvi.options().dtype(at::kLong));
  auto weights = at::zeros({B, height, width, 3}, fvi.options());
  const Split s(B, height);
  const float eps_f = static_cast<float>(eps);
  AT_DISPATCH_FLOATING_TYPES(fvi.scalar_type(), "dibr_ros_rasterize_forward_cpu", [&] {
    const Grid<scalar_t> g(height, width, multiplier);
    const scalar_t* pz = fvz.data_ptr<scalar_t>();
    const scalar_t* pv = fvi.data_ptr<scalar_t>();
    const scalar_t* pf = feat.data_ptr<scalar_t>();
    const scalar_t* pn = nz.data_ptr<scalar_t>();
    scalar_t* of = features.data_ptr<scalar_t>();
    int64_t* oi = face_idx.data_ptr<int64_t>();
    scalar_t* ow = weights.data_ptr<scalar_t>();
    at::parallel_for(0, B * s.bands, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; t++) {
        rasterize_task(g, pz, pv, pf, pn, F, D, eps_f, s.b(t), s.row0(t), s.row1(t), of, oi, ow);
      }
    });
  });
  return {features, face_idx, weights};
}

std::tuple<at::Tensor, at::Tensor> rasterize_backward_cpu(const at::Tensor& grad_features,
                                                          const at::Tensor& face_idx, const at::Tensor& weights,
                                                          const at::Tensor& face_vertices_image,
                                                          const at::Tensor& face_features, double multiplier,
                                                          double eps) {
  check_common(face_vertices_image);
  const auto grad = grad_features.contiguous();
  const auto fidx = face_idx.contiguous();
  const auto w = weights.contiguous();
  const auto fvi = face_vertices_image.contiguous();
  const auto feat = face_features.contiguous();
  const int64_t B = fvi.size(0), F = fvi.size(1), D = feat.size(3);
  const int64_t H = grad.size(1), W = grad.size(2);
  TORCH_CHECK(grad.sizes() == at::IntArrayRef({B, H, W, D}) && fidx.sizes() == at::IntArrayRef({B, H, W}) &&
                  w.sizes() == at::IntArrayRef({B, H, W, 3}),
              "dibr_ros: inconsistent shapes in rasterize_backward");
  TORCH_CHECK(fidx.scalar_type() == at::kLong, "dibr_ros: face_idx must be int64");
  auto grad_fvi = at::empty_like(fvi);
  auto grad_feat = at::empty_like(feat);
  const Split s(B, H);
  const int64_t tasks = B * s.bands;
  std::vector<double> acc_v(tasks * F * 6, 0.0), acc_f(tasks * F * 3 * D, 0.0);
  const float eps_f = static_cast<float>(eps);
  AT_DISPATCH_FLOATING_TYPES(fvi.scalar_type(), "dibr_ros_rasterize_backward_cpu", [&] {
    const Grid<scalar_t> g(H, W, multiplier);
    const scalar_t* pg = grad.data_ptr<scalar_t>();
    const int64_t* pi = fidx.data_ptr<int64_t>();
    const scalar_t* pw = w.data_ptr<scalar_t>();
    const scalar_t* pv = fvi.data_ptr<scalar_t>();
    const scalar_t* pf = feat.data_ptr<scalar_t>();
    at::parallel_for(0, tasks, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; t++) {
        rasterize_backward_task(g, pg, pi, pw, pv, pf, F, D, eps_f, s.b(t), s.row0(t), s.row1(t),
                                acc_v.data() + t * F * 6, acc_f.data() + t * F * 3 * D);
      }
    });
    reduce_bands(acc_v, s, B, F * 6, grad_fvi.data_ptr<scalar_t>());
    reduce_bands(acc_f, s, B, F * 3 * D, grad_feat.data_ptr<scalar_t>());
  });
  return {grad_fvi, grad_feat};
}

std::tuple<at::Tensor, std::vector<at::Tensor>> soft_mask_forward_cpu(const at::Tensor& face_vertices_image,
                                                                      const at::Tensor& face_idx,
                                                                      double sigmainv, double boxlen, int64_t knum,
                                                                      double multiplier) {
  check_common(face_vertices_image);
  TORCH_CHECK(knum > 0, "dibr_ros: knum must be positive");
  const auto fvi = face_vertices_image.contiguous();
  const auto fidx = face_idx.contiguous();
  TORCH_CHECK(fidx.dim() == 3 && fidx.size(0) == fvi.size(0) && fidx.scalar_type() == at::kLong,
              "dibr_ros: face_idx must be (B, H, W) int64");
  const int64_t B = fvi.size(0), F = fvi.size(1), H = fidx.size(1), W = fidx.size(2);
  auto soft = at::empty({B, H, W}, fvi.options());
  const Split s(B, H);
  const SoftParams sp{sigmainv, boxlen, multiplier, knum};
  AT_DISPATCH_FLOATING_TYPES(fvi.scalar_type(), "dibr_ros_soft_mask_forward_cpu", [&] {
    const Grid<scalar_t> g(H, W, multiplier);
    const scalar_t* pv = fvi.data_ptr<scalar_t>();
    const int64_t* pi = fidx.data_ptr<int64_t>();
    scalar_t* out = soft.data_ptr<scalar_t>();
    at::parallel_for(0, B * s.bands, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; t++) soft_mask_task(g, pv, pi, F, sp, s.b(t), s.row0(t), s.row1(t), out);
    });
  });
  return {soft, std::vector<at::Tensor>{}};
}

at::Tensor soft_mask_backward_cpu(const at::Tensor& grad_soft_mask, const at::Tensor& /*soft_mask*/,
                                  const at::Tensor& face_vertices_image, const at::Tensor& face_idx,
                                  at::TensorList /*saved*/, double sigmainv, double boxlen, int64_t knum,
                                  double multiplier) {
  check_common(face_vertices_image);
  const auto grad = grad_soft_mask.contiguous();
  const auto fvi = face_vertices_image.contiguous();
  const auto fidx = face_idx.contiguous();
  const int64_t B = fvi.size(0), F = fvi.size(1), H = fidx.size(1), W = fidx.size(2);
  TORCH_CHECK(grad.sizes() == fidx.sizes(), "dibr_ros: grad_soft_mask must match face_idx (B, H, W)");
  auto grad_fvi = at::empty_like(fvi);
  const Split s(B, H);
  const int64_t tasks = B * s.bands;
  std::vector<double> acc(tasks * F * 6, 0.0);
  const SoftParams sp{sigmainv, boxlen, multiplier, knum};
  AT_DISPATCH_FLOATING_TYPES(fvi.scalar_type(), "dibr_ros_soft_mask_backward_cpu", [&] {
    const Grid<scalar_t> g(H, W, multiplier);
    const scalar_t* pg = grad.data_ptr<scalar_t>();
    const scalar_t* pv = fvi.data_ptr<scalar_t>();
    const int64_t* pi = fidx.data_ptr<int64_t>();
    at::parallel_for(0, tasks, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; t++) {
        soft_mask_backward_task(g, pg, pv, pi, F, sp, s.b(t), s.row0(t), s.row1(t), acc.data() + t * F * 6);
      }
    });
    reduce_bands(acc, s, B, F * 6, grad_fvi.data_ptr<scalar_t>());
  });
  return grad_fvi;
}

}  // namespace
}  // namespace dibr_ros

TORCH_LIBRARY_IMPL(dibr_ros, CPU, m) {
  m.impl("rasterize_forward", &dibr_ros::rasterize_forward_cpu);
  m.impl("rasterize_backward", &dibr_ros::rasterize_backward_cpu);
  m.impl("soft_mask_forward", &dibr_ros::soft_mask_forward_cpu);
  m.impl("soft_mask_backward", &dibr_ros::soft_mask_backward_cpu);
}
