// Device code of rasterize.cu (kept torch-free so it also compiles in a CPU emulation).
#pragma once

#include "common.cuh"

namespace dibr_ros {
namespace cuda {

// Exact pixel range of every drawn face (normal_z >= 0), kEmpty for culled ones.
template <typename T>
__global__ void __launch_bounds__(256)
raster_ranges_kernel(const T* __restrict__ fvi, const T* __restrict__ normals_z, uint2* __restrict__ ranges,
                     int64_t num, int height, int width, float mult_f, T mult) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= num) return;
  const float sx = pixel_scale(mult_f, width), sy = pixel_scale(mult_f, height);
  ranges[i] = normals_z[i] >= T(0) ? face_pixel_range<T>(fvi + i * 6, mult, T(0), height, width, sx, sy)
                                   : make_uint2(kEmpty, kEmpty);
}

template <typename T>
__global__ void __launch_bounds__(kBlock)
raster_forward_kernel(const T* __restrict__ fvz, const T* __restrict__ fvi, const T* __restrict__ ff,
                      const uint2* __restrict__ ranges, T* __restrict__ features, int64_t* __restrict__ face_idx,
                      T* __restrict__ weights, int batch, int num_faces, int height, int width, int dim,
                      int tiles_x, float mult_f, T mult, T eps) {
  __shared__ T s_v[9][kBlock];  // ax ay bx by cx cy (multiplied) az bz cz
  __shared__ uint2 s_range[kBlock];
  __shared__ int s_face[kBlock];
  __shared__ int s_warp_count[kWarps];

  const auto [c0, r0, c1, r1, w, h, active] = tile_pixel(tiles_x, width, height);
  const float sx = pixel_scale(mult_f, width), sy = pixel_scale(mult_f, height);
  const T x0 = static_cast<T>(pixel_x(w, width, sx));
  const T y0 = static_cast<T>(pixel_y(h, height, sy));

  for (int b = blockIdx.y; b < batch; b += gridDim.y) {
    const int64_t fbase = static_cast<int64_t>(b) * num_faces;
    T best_z = -INFINITY, bw0 = 0, bw1 = 0, bw2 = 0;
    int best = -1;
    for (int start = 0; start < num_faces; start += kBlock) {
      const int f = start + threadIdx.x;
      uint2 r = make_uint2(kEmpty, kEmpty);
      if (f < num_faces) r = ranges[fbase + f];
      const bool keep = f < num_faces && range_hits(r, c0, c1, r0, r1);
      int total;
      const int slot = compact_slot(keep, s_warp_count, total);
      if (keep) {
        const T* v = fvi + (fbase + f) * 6;
        const T* z = fvz + (fbase + f) * 3;
#pragma unroll
        for (int k = 0; k < 6; ++k) s_v[k][slot] = v[k] * mult;
#pragma unroll
        for (int k = 0; k < 3; ++k) s_v[6 + k][slot] = z[k];
        s_range[slot] = r;
        s_face[slot] = f;
      }
      __syncthreads();
      if (active) {
        for (int k = 0; k < total; ++k) {
          if (!range_holds(s_range[k], w, h)) continue;
          const T ex_a = s_v[0][k] - x0, ey_a = s_v[1][k] - y0;
          const T ex_b = s_v[2][k] - x0, ey_b = s_v[3][k] - y0;
          const T ex_c = s_v[4][k] - x0, ey_c = s_v[5][k] - y0;
          T w0 = ex_b * ey_c - ey_b * ex_c;
          T w1 = ex_c * ey_a - ey_c * ex_a;
          T w2 = ex_a * ey_b - ey_a * ex_b;
          T norm = w0 + w1 + w2;
          norm += copysign(eps, norm);
          w0 = div_rn(w0, norm);
          w1 = div_rn(w1, norm);
          w2 = div_rn(w2, norm);
          if (w0 < T(0) || w1 < T(0) || w2 < T(0)) continue;
          const T z0 = w0 * s_v[6][k] + w1 * s_v[7][k] + w2 * s_v[8][k];
          if (z0 <= best_z) continue;
          best_z = z0;
          best = s_face[k];
          bw0 = w0;
          bw1 = w1;
          bw2 = w2;
        }
      }
      __syncthreads();
    }
    if (active) {
      const int64_t p = (static_cast<int64_t>(b) * height + h) * width + w;
      face_idx[p] = best;
      weights[p * 3 + 0] = bw0;
      weights[p * 3 + 1] = bw1;
      weights[p * 3 + 2] = bw2;
      T* out = features + p * dim;
      if (best >= 0) {
        const T* u = ff + (fbase + best) * 3 * dim;
        for (int d = 0; d < dim; ++d) out[d] = bw0 * u[d] + bw1 * u[dim + d] + bw2 * u[2 * dim + d];
      } else {
        for (int d = 0; d < dim; ++d) out[d] = T(0);
      }
    }
  }
}

// One warp per face. Feature channels are handled DC at a time (register accumulators); the first
// pass also accumulates the six position gradients.
template <typename T, int DC>
__global__ void __launch_bounds__(kGatherBlock)
raster_backward_kernel(const T* __restrict__ grad_feat, const int64_t* __restrict__ face_idx,
                       const T* __restrict__ weights, const T* __restrict__ fvi, const T* __restrict__ ff,
                       T* __restrict__ grad_fvi, T* __restrict__ grad_ff, int64_t num, int num_faces,
                       int height, int width, int dim, float mult_f, T mult, T eps) {
  const int64_t gface = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  const int lane = threadIdx.x & 31;
  if (gface >= num) return;  // whole warps exit together
  const int b = static_cast<int>(gface / num_faces);
  const int f = static_cast<int>(gface - static_cast<int64_t>(b) * num_faces);
  const float sx = pixel_scale(mult_f, width), sy = pixel_scale(mult_f, height);
  const T* v6 = fvi + gface * 6;
  const T ax = v6[0] * mult, ay = v6[1] * mult, bx = v6[2] * mult, by = v6[3] * mult;
  const T cx = v6[4] * mult, cy = v6[5] * mult;
  const uint2 r = face_pixel_range<T>(v6, mult, T(0), height, width, sx, sy);
  const int cl = range_lo(r.x), rl = range_lo(r.y);
  const int ncol = range_hi(r.x) - cl + 1;
  const int npix = (r.x == kEmpty) ? 0 : ncol * (range_hi(r.y) - rl + 1);
  const T* u = ff + gface * 3 * dim;
  const int64_t img = static_cast<int64_t>(b) * height * width;

  for (int d0 = 0; d0 < dim || d0 == 0; d0 += DC) {
    T gpos[6] = {0, 0, 0, 0, 0, 0};
    T gu[3][DC];
#pragma unroll
    for (int i = 0; i < 3; ++i)
#pragma unroll
      for (int j = 0; j < DC; ++j) gu[i][j] = 0;

    for (int i = lane; i < npix; i += 32) {
      const int h = rl + i / ncol, w = cl + i % ncol;
      const int64_t p = img + static_cast<int64_t>(h) * width + w;
      if (face_idx[p] != f) continue;
      const T W0 = weights[p * 3 + 0], W1 = weights[p * 3 + 1], W2 = weights[p * 3 + 2];
      const T* g = grad_feat + p * dim;
#pragma unroll
      for (int j = 0; j < DC; ++j) {
        if (d0 + j < dim) {
          const T gd = g[d0 + j];
          gu[0][j] += W0 * gd;
          gu[1][j] += W1 * gd;
          gu[2][j] += W2 * gd;
        }
      }
      if (d0 == 0) {
        T U0 = 0, U1 = 0, U2 = 0;
        for (int d = 0; d < dim; ++d) {
          const T gd = g[d];
          U0 += gd * u[d];
          U1 += gd * u[dim + d];
          U2 += gd * u[2 * dim + d];
        }
        const T x0 = static_cast<T>(pixel_x(w, width, sx));
        const T y0 = static_cast<T>(pixel_y(h, height, sy));
        const T ex_a = ax - x0, ey_a = ay - y0, ex_b = bx - x0, ey_b = by - y0;
        const T ex_c = cx - x0, ey_c = cy - y0;
        const T e0 = ex_b * ey_c - ey_b * ex_c;
        const T e1 = ex_c * ey_a - ey_c * ex_a;
        const T e2 = ex_a * ey_b - ey_a * ex_b;
        T norm = e0 + e1 + e2;
        norm += copysign(eps, norm);
        const T ibar = W0 * U0 + W1 * U1 + W2 * U2;
        const T v0 = (U0 - ibar) / norm, v1 = (U1 - ibar) / norm, v2 = (U2 - ibar) / norm;
        gpos[0] += v2 * ey_b - v1 * ey_c;
        gpos[1] += v1 * ex_c - v2 * ex_b;
        gpos[2] += v0 * ey_c - v2 * ey_a;
        gpos[3] += v2 * ex_a - v0 * ex_c;
        gpos[4] += v1 * ey_a - v0 * ey_b;
        gpos[5] += v0 * ex_b - v1 * ex_a;
      }
    }
#pragma unroll
    for (int i = 0; i < 3; ++i)
#pragma unroll
      for (int j = 0; j < DC; ++j) gu[i][j] = warp_sum(gu[i][j]);
    if (lane == 0) {
      T* out = grad_ff + gface * 3 * dim;
#pragma unroll
      for (int i = 0; i < 3; ++i)
#pragma unroll
        for (int j = 0; j < DC; ++j)
          if (d0 + j < dim) out[i * dim + d0 + j] = gu[i][j];
    }
    if (d0 == 0) {
#pragma unroll
      for (int k = 0; k < 6; ++k) gpos[k] = warp_sum(gpos[k]);
      if (lane == 0) {
#pragma unroll
        for (int k = 0; k < 6; ++k) grad_fvi[gface * 6 + k] = gpos[k] * mult;
      }
    }
  }
}

}  // namespace cuda
}  // namespace dibr_ros
