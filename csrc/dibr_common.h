// Per-pixel DIB-R math shared by the CPU and CUDA kernels (host and device inline functions).
//
// Everything works in "scaled" coordinates: NDC multiplied by `multiplier` (M), as Kaolin's kernels do,
// and reproduces Kaolin's arithmetic order so face selection matches it bit for bit:
//   - pixel centres are formed in float32 (Kaolin's `multiplier` is a C float), then cast to scalar_t;
//   - barycentrics are edge functions normalised by their sum + copysign(eps, sum), eps a float;
//   - the soft-mask distances divide by (down + EPS) with a double EPS = 1e-7.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define DIBR_HD __host__ __device__ __forceinline__
#else
#define DIBR_HD inline
#endif

namespace dibr_ros {

// Kaolin's soft-mask EPS (a double literal, so float data is divided in double).
constexpr double kSoftEps = 1e-7;

// Scaled NDC x of pixel column w: M / W * (2w + 1 - W), in float as in Kaolin.
DIBR_HD float pixel_x(int w, int width, float multiplier) {
  return multiplier / width * (2 * w + 1 - width);
}

// Scaled NDC y of pixel row h (row 0 at the top): M / H * (H - 2h - 1), in float.
DIBR_HD float pixel_y(int h, int height, float multiplier) {
  return multiplier / height * (height - 2 * h - 1);
}

// Edge functions of pixel (x0, y0) w.r.t. triangle a, b, c (scaled coordinates):
// e0 = (b-p)x(c-p), e1 = (c-p)x(a-p), e2 = (a-p)x(b-p).
template <typename T>
DIBR_HD void edge_functions(const T* v, T x0, T y0, T& e0, T& e1, T& e2) {
  const T ax = v[0] - x0, ay = v[1] - y0;
  const T bx = v[2] - x0, by = v[3] - y0;
  const T cx = v[4] - x0, cy = v[5] - y0;
  e0 = bx * cy - by * cx;
  e1 = cx * ay - cy * ax;
  e2 = ax * by - ay * bx;
}

// Normaliser of the barycentrics: sum of edge functions + copysign(eps, sum).
template <typename T>
DIBR_HD T barycentric_norm(T e0, T e1, T e2, float eps) {
  T norm = e0 + e1 + e2;
  using std::copysign;
  norm += copysign(static_cast<T>(eps), norm);
  return norm;
}

// Kaolin's squared distance (scaled units) from pixel (x0, y0) to the boundary of triangle v (6 scaled
// coordinates): min over the 3 edges (perpendicular distance when its foot lies on the segment, else
// 4 M^2) and the 3 vertices; the first minimum wins. `kind` = 0..2 edge (v_i, v_{i+1}), 3..5 vertex.
template <typename T>
DIBR_HD T boundary_dist2(const T* v, T x0, T y0, float multiplier, int& kind) {
  T pdis[6];
  for (int i = 0; i < 3; i++) {
    const int j = (i + 1) % 3;
    const T x1 = v[2 * i], y1 = v[2 * i + 1];
    const T x2 = v[2 * j], y2 = v[2 * j + 1];
    const T A = y2 - y1;
    const T B = x1 - x2;
    const T C = x2 * y1 - x1 * y2;
    const T up = A * x0 + B * y0 + C;
    const T down = A * A + B * B;
    T x3 = B * B * x0 - A * B * y0 - A * C;
    T y3 = A * A * y0 - A * B * x0 - B * C;
    x3 = x3 / (down + kSoftEps);
    y3 = y3 / (down + kSoftEps);
    const T direct = (x3 - x1) * (x3 - x2) + (y3 - y1) * (y3 - y2);
    if (direct > 0) {
      pdis[i] = 4 * multiplier * multiplier;
    } else {
      pdis[i] = up * up / (down + kSoftEps);
    }
  }
  for (int i = 0; i < 3; i++) {
    const T dx = x0 - v[2 * i], dy = y0 - v[2 * i + 1];
    pdis[i + 3] = dx * dx + dy * dy;
  }
  kind = 0;
  T d2 = pdis[0];
  for (int i = 1; i < 6; i++) {
    if (d2 > pdis[i]) {
      d2 = pdis[i];
      kind = i;
    }
  }
  return d2;
}

// exp(-sigmainv * d2 / M / M), the contribution of one face to a background pixel.
template <typename T>
DIBR_HD T soft_prob(T d2, float sigmainv, float multiplier) {
  using std::exp;
  const T z = sigmainv * d2 / multiplier / multiplier;
  return exp(-z);
}

// Gradient of d2 = boundary_dist2(kind) w.r.t. the scaled triangle coordinates, added (times `scale`)
// to g[6]. The edge case differentiates up^2 / (down + EPS) exactly.
template <typename T>
DIBR_HD void boundary_dist2_grad(const T* v, T x0, T y0, int kind, T scale, T* g) {
  if (kind >= 3) {
    const int i = kind - 3;
    g[2 * i] += scale * 2 * (v[2 * i] - x0);
    g[2 * i + 1] += scale * 2 * (v[2 * i + 1] - y0);
    return;
  }
  const int i = kind, j = (kind + 1) % 3;
  const T x1 = v[2 * i], y1 = v[2 * i + 1];
  const T x2 = v[2 * j], y2 = v[2 * j + 1];
  const T A = y2 - y1;
  const T B = x1 - x2;
  const T C = x2 * y1 - x1 * y2;
  const T up = A * x0 + B * y0 + C;
  const T den = static_cast<T>(A * A + B * B + kSoftEps);
  const T d_up = 2 * up / den;              // d(d2)/d(up)
  const T d_down = -(up * up / den) / den;  // d(d2)/d(down)
  // up = A x0 + B y0 + C, down = A^2 + B^2 with A = y2 - y1, B = x1 - x2.
  g[2 * i] += scale * (d_up * (y0 - y2) + d_down * 2 * B);
  g[2 * i + 1] += scale * (d_up * (x2 - x0) - d_down * 2 * A);
  g[2 * j] += scale * (d_up * (y1 - y0) - d_down * 2 * B);
  g[2 * j + 1] += scale * (d_up * (x0 - x1) + d_down * 2 * A);
}

// Gradient of the interpolated value I = sum_i gw_i * w_i, w_i = e_i / barycentric_norm, w.r.t. the
// scaled triangle coordinates (pixel fixed), where gw_i = dL/dw_i. Written (not added) to g[6].
template <typename T>
DIBR_HD void barycentric_grad(const T* v, T x0, T y0, float eps, const T* gw, T* g) {
  const T ax = v[0] - x0, ay = v[1] - y0;
  const T bx = v[2] - x0, by = v[3] - y0;
  const T cx = v[4] - x0, cy = v[5] - y0;
  const T e0 = bx * cy - by * cx;
  const T e1 = cx * ay - cy * ax;
  const T e2 = ax * by - ay * bx;
  const T norm = barycentric_norm(e0, e1, e2, eps);
  // dL/de_i = gw_i / norm - (sum_j gw_j e_j) / norm^2, since d norm / d e_i = 1.
  const T s = (gw[0] * e0 + gw[1] * e1 + gw[2] * e2) / (norm * norm);
  const T g0 = gw[0] / norm - s, g1 = gw[1] / norm - s, g2 = gw[2] / norm - s;
  g[0] = g2 * by - g1 * cy;
  g[1] = g1 * cx - g2 * bx;
  g[2] = g0 * cy - g2 * ay;
  g[3] = g2 * ax - g0 * cx;
  g[4] = g1 * ay - g0 * by;
  g[5] = g0 * bx - g1 * ax;
}

}  // namespace dibr_ros
