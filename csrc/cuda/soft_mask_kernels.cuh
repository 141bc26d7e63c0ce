// Device code of soft_mask.cu (kept torch-free so it also compiles in a CPU emulation).
#pragma once

#include "common.cuh"

namespace dibr_ros {
namespace cuda {

constexpr double kSoftEps = 1e-7;  // Kaolin's EPS in the distance and backward denominators

// Squared distance (multiplied units) from (x0, y0) to the boundary of triangle v (multiplied): the
// minimum over the three edges (only when the perpendicular foot lies on the segment) and the three
// vertices. type 0-2 = edge (i, i+1), 3-5 = vertex i; first minimum wins.
template <typename T>
__device__ __forceinline__ T boundary_dist2(const T v[6], T x0, T y0, T mult, int& type) {
  const T eps = static_cast<T>(kSoftEps);
  T best = T(0);
  type = 0;
#pragma unroll
  for (int i = 0; i < 3; ++i) {
    const int j = (i + 1) % 3;
    const T x1 = v[2 * i], y1 = v[2 * i + 1], x2 = v[2 * j], y2 = v[2 * j + 1];
    const T A = y2 - y1, B = x1 - x2, C = x2 * y1 - x1 * y2;
    const T up = A * x0 + B * y0 + C;
    const T down = A * A + B * B;
    T x3 = B * B * x0 - A * B * y0 - A * C;
    T y3 = A * A * y0 - A * B * x0 - B * C;
    x3 = x3 / (down + eps);
    y3 = y3 / (down + eps);
    const T direct = (x3 - x1) * (x3 - x2) + (y3 - y1) * (y3 - y2);
    const T d = direct > T(0) ? T(4) * mult * mult : up * up / (down + eps);
    if (i == 0) {
      best = d;
    } else if (best > d) {
      best = d;
      type = i;
    }
  }
#pragma unroll
  for (int i = 0; i < 3; ++i) {
    const T dx = x0 - v[2 * i], dy = y0 - v[2 * i + 1];
    const T d = dx * dx + dy * dy;
    if (best > d) {
      best = d;
      type = 3 + i;
    }
  }
  return best;
}

template <typename T>
__device__ __forceinline__ T face_prob(T d2, T sigmainv, T mult) {
  return exp(-(sigmainv * d2 / mult / mult));
}

template <typename T>
__global__ void __launch_bounds__(256)
soft_ranges_kernel(const T* __restrict__ fvi, uint2* __restrict__ ranges, int64_t num, int height, int width,
                   float mult_f, T mult, T grow) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= num) return;
  const float sx = pixel_scale(mult_f, width), sy = pixel_scale(mult_f, height);
  ranges[i] = face_pixel_range<T>(fvi + i * 6, mult, grow, height, width, sx, sy);
}

template <typename T>
__global__ void __launch_bounds__(kBlock)
soft_forward_kernel(const T* __restrict__ fvi, const int64_t* __restrict__ face_idx,
                    const uint2* __restrict__ ranges, T* __restrict__ soft_mask, int* __restrict__ last,
                    int batch, int num_faces, int height, int width, int knum, int tiles_x, float mult_f, T mult,
                    T sigmainv) {
  __shared__ T s_v[6][kBlock];
  __shared__ uint2 s_range[kBlock];
  __shared__ int s_face[kBlock];
  __shared__ int s_warp_count[kWarps];

  const auto [c0, r0, c1, r1, w, h, active] = tile_pixel(tiles_x, width, height);
  const float sx = pixel_scale(mult_f, width), sy = pixel_scale(mult_f, height);
  const T x0 = static_cast<T>(pixel_x(w, width, sx));
  const T y0 = static_cast<T>(pixel_y(h, height, sy));

  for (int b = blockIdx.y; b < batch; b += gridDim.y) {
    const int64_t fbase = static_cast<int64_t>(b) * num_faces;
    const int64_t p = (static_cast<int64_t>(b) * height + h) * width + w;
    const bool covered = active && face_idx[p] >= 0;
    bool done = !active || covered || knum <= 0;
    int count = 0, last_face = INT_MAX;
    T keep = T(1);  // prod(1 - prob), rounded as Kaolin does (double product per step)
    if (!__syncthreads_and(done)) {
      for (int start = 0; start < num_faces; start += kBlock) {
        const int f = start + threadIdx.x;
        uint2 r = make_uint2(kEmpty, kEmpty);
        if (f < num_faces) r = ranges[fbase + f];
        const bool hit = f < num_faces && range_hits(r, c0, c1, r0, r1);
        int total;
        const int slot = compact_slot(hit, s_warp_count, total);
        if (hit) {
          const T* v = fvi + (fbase + f) * 6;
#pragma unroll
          for (int k = 0; k < 6; ++k) s_v[k][slot] = v[k] * mult;
          s_range[slot] = r;
          s_face[slot] = f;
        }
        __syncthreads();
        if (!done) {
          for (int k = 0; k < total; ++k) {
            if (!range_holds(s_range[k], w, h)) continue;
            const T v[6] = {s_v[0][k], s_v[1][k], s_v[2][k], s_v[3][k], s_v[4][k], s_v[5][k]};
            int type;
            const T prob = face_prob(boundary_dist2(v, x0, y0, mult, type), sigmainv, mult);
            keep = static_cast<T>(static_cast<double>(keep) * (1.0 - static_cast<double>(prob)));
            if (++count == knum) {
              last_face = s_face[k];
              done = true;
              break;
            }
          }
        }
        if (__syncthreads_and(done)) break;
      }
    }
    if (active) {
      soft_mask[p] = covered ? T(1) : static_cast<T>(1.0 - static_cast<double>(keep));
      last[p] = covered || knum <= 0 ? -1 : last_face;
    }
  }
}

// One warp per face: gathers d(loss)/d(vertices) over the background pixels of its grown bbox that
// count it among their first knum candidates.
template <typename T>
__global__ void __launch_bounds__(kGatherBlock)
soft_backward_kernel(const T* __restrict__ grad_mask, const T* __restrict__ soft_mask,
                     const int64_t* __restrict__ face_idx, const int* __restrict__ last, const T* __restrict__ fvi,
                     T* __restrict__ grad_fvi, int64_t num, int num_faces, int height, int width, float mult_f,
                     T mult, T grow, T sigmainv) {
  const int64_t gface = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  const int lane = threadIdx.x & 31;
  if (gface >= num) return;
  const int b = static_cast<int>(gface / num_faces);
  const int f = static_cast<int>(gface - static_cast<int64_t>(b) * num_faces);
  const float sx = pixel_scale(mult_f, width), sy = pixel_scale(mult_f, height);
  const T* v6 = fvi + gface * 6;
  T v[6];
#pragma unroll
  for (int k = 0; k < 6; ++k) v[k] = v6[k] * mult;
  const uint2 r = face_pixel_range<T>(v6, mult, grow, height, width, sx, sy);
  const int cl = range_lo(r.x), rl = range_lo(r.y);
  const int ncol = range_hi(r.x) - cl + 1;
  const int npix = (r.x == kEmpty) ? 0 : ncol * (range_hi(r.y) - rl + 1);
  const int64_t img = static_cast<int64_t>(b) * height * width;
  const T eps = static_cast<T>(kSoftEps);

  T g[6] = {0, 0, 0, 0, 0, 0};
  for (int i = lane; i < npix; i += 32) {
    const int h = rl + i / ncol, w = cl + i % ncol;
    const int64_t p = img + static_cast<int64_t>(h) * width + w;
    if (face_idx[p] >= 0 || f > last[p]) continue;
    const T x0 = static_cast<T>(pixel_x(w, width, sx));
    const T y0 = static_cast<T>(pixel_y(h, height, sy));
    int type;
    const T prob = face_prob(boundary_dist2(v, x0, y0, mult, type), sigmainv, mult);
    const T dldz = -sigmainv * grad_mask[p] * (T(1) - soft_mask[p]) / (T(1) - prob + eps) * prob;
    // Contribution to vertex i1 (and i2 for an edge); unrolled selects keep g[] in registers.
    T gx1, gy1, gx2 = T(0), gy2 = T(0);
    int i1, i2 = -1;
    if (type >= 3) {
      i1 = type - 3;
      const T x1 = type == 3 ? v[0] : (type == 4 ? v[2] : v[4]);
      const T y1 = type == 3 ? v[1] : (type == 4 ? v[3] : v[5]);
      gx1 = dldz * 2 * (x1 - x0);
      gy1 = dldz * 2 * (y1 - y0);
    } else {
      i1 = type;
      i2 = type == 2 ? 0 : type + 1;
      const T x1 = i1 == 0 ? v[0] : (i1 == 1 ? v[2] : v[4]);
      const T y1 = i1 == 0 ? v[1] : (i1 == 1 ? v[3] : v[5]);
      const T x2 = i2 == 0 ? v[0] : (i2 == 1 ? v[2] : v[4]);
      const T y2 = i2 == 0 ? v[1] : (i2 == 1 ? v[3] : v[5]);
      const T A = y2 - y1, B = x1 - x2, C = x2 * y1 - x1 * y2;
      const T up = A * x0 + B * y0 + C;
      const T down = A * A + B * B;
      const T d2 = up * up / (down + eps);
      const T dzdA = 2 * (x0 * up - d2 * A) / (down + eps);
      const T dzdB = 2 * (y0 * up - d2 * B) / (down + eps);
      const T dzdC = 2 * up / (down + eps);
      gx1 = dldz * (dzdB - y2 * dzdC);
      gy1 = dldz * (x2 * dzdC - dzdA);
      gx2 = dldz * (y1 * dzdC - dzdB);
      gy2 = dldz * (dzdA - x1 * dzdC);
    }
#pragma unroll
    for (int k = 0; k < 3; ++k) {
      if (k == i1) {
        g[2 * k] += gx1;
        g[2 * k + 1] += gy1;
      } else if (k == i2) {
        g[2 * k] += gx2;
        g[2 * k + 1] += gy2;
      }
    }
  }
#pragma unroll
  for (int k = 0; k < 6; ++k) g[k] = warp_sum(g[k]);
  if (lane == 0) {
#pragma unroll
    for (int k = 0; k < 6; ++k) grad_fvi[gface * 6 + k] = g[k] / mult;
  }
}

}  // namespace cuda
}  // namespace dibr_ros
