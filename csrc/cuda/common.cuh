// Shared device helpers of the DIB-R CUDA kernels (raster_kernels.cuh, soft_mask_kernels.cuh).
// Device code only (no torch headers), so the kernels can also be compiled by a CPU emulation.
//
// Screen tiling. Every face gets an exact pixel range per axis: the columns w with
// xmin <= x0(w) < xmax and the rows h with ymin <= y0(h) < ymax, where x0/y0 are Kaolin's pixel
// centres in multiplied coordinates and xmin.. the (optionally grown) face bbox. Testing a pixel
// against this range is bit-identical to Kaolin's float bbox test, and testing a 16x16 tile against it
// is exact too, so the kernels cull faces per tile without changing any result.
//
// Pixel centres are computed in float32 even for float64 inputs, as Kaolin's kernels do
// (`multiplier / width * (2 * w + 1 - width)` with a float multiplier); the __f*_rn intrinsics keep
// them IEEE-exact under --use_fast_math.
#pragma once

#include <climits>
#include <cmath>
#include <cstdint>

namespace dibr_ros {
namespace cuda {

constexpr int kTile = 16;                 // tile side in pixels; one thread per pixel
constexpr int kBlock = kTile * kTile;     // threads per tile block
constexpr int kWarps = kBlock / 32;
constexpr int kGatherBlock = 256;         // backward: one warp per face, 8 faces per block
constexpr unsigned kEmpty = 0x0000FFFFu;  // packed range with lo=0xFFFF > hi=0: no pixel
constexpr int kMaxSide = 32767;           // ranges are packed as two 16-bit fields

// Pixel centre in multiplied NDC, exactly Kaolin's float32 expression.
__device__ __forceinline__ float pixel_x(int w, int width, float scale) {
  return __fmul_rn(scale, static_cast<float>(2 * w + 1 - width));
}
__device__ __forceinline__ float pixel_y(int h, int height, float scale) {
  return __fmul_rn(scale, static_cast<float>(height - 2 * h - 1));
}
// scale = multiplier / side (float, IEEE).
__device__ __forceinline__ float pixel_scale(float multiplier, int side) {
  return __fdiv_rn(multiplier, static_cast<float>(side));
}

// The pixel this thread owns in its block's kTile x kTile tile (block x = tile index, row-major over
// tiles_x columns), the tile's inclusive pixel bounds clipped to the image, and whether the pixel exists.
struct TilePixel {
  int c0, r0, c1, r1;
  int w, h;
  bool active;
};

__device__ __forceinline__ TilePixel tile_pixel(int tiles_x, int width, int height) {
  const int tx = blockIdx.x % tiles_x, ty = blockIdx.x / tiles_x;
  const int c0 = tx * kTile, r0 = ty * kTile;
  const int w = c0 + (threadIdx.x % kTile), h = r0 + (threadIdx.x / kTile);
  return {c0, r0, min(c0 + kTile, width) - 1, min(r0 + kTile, height) - 1, w, h, w < width && h < height};
}

// IEEE division for the barycentric normalisation (fast-math would otherwise approximate it and
// could move a pixel exactly on a shared edge to the other face).
__device__ __forceinline__ float div_rn(float a, float b) { return __fdiv_rn(a, b); }
__device__ __forceinline__ double div_rn(double a, double b) { return a / b; }

__device__ __forceinline__ int clamp_guess(double g, int n) {
  // NaN/inf-safe floor + clamp into [0, n-1].
  if (!(g > 0.0)) return 0;
  if (!(g < static_cast<double>(n - 1))) return n - 1;
  return static_cast<int>(g);
}

// Columns w in [0, width) with lo <= x0(w) < hi, as [a, b]; a > b when empty.
template <typename T>
__device__ __forceinline__ void column_range(T lo, T hi, int width, float scale, int& a, int& b) {
  const double s = static_cast<double>(scale);
  a = clamp_guess((static_cast<double>(lo) / s + width - 1) * 0.5, width);
  while (a > 0 && static_cast<T>(pixel_x(a - 1, width, scale)) >= lo) --a;
  while (a < width && static_cast<T>(pixel_x(a, width, scale)) < lo) ++a;
  b = clamp_guess((static_cast<double>(hi) / s + width - 1) * 0.5, width);
  while (b < width - 1 && static_cast<T>(pixel_x(b + 1, width, scale)) < hi) ++b;
  while (b >= 0 && static_cast<T>(pixel_x(b, width, scale)) >= hi) --b;
}

// Rows h in [0, height) with lo <= y0(h) < hi (y0 decreases with h), as [a, b]; a > b when empty.
template <typename T>
__device__ __forceinline__ void row_range(T lo, T hi, int height, float scale, int& a, int& b) {
  const double s = static_cast<double>(scale);
  a = clamp_guess((height - 1 - static_cast<double>(hi) / s) * 0.5, height);
  while (a > 0 && static_cast<T>(pixel_y(a - 1, height, scale)) < hi) --a;
  while (a < height && static_cast<T>(pixel_y(a, height, scale)) >= hi) ++a;
  b = clamp_guess((height - 1 - static_cast<double>(lo) / s) * 0.5, height);
  while (b < height - 1 && static_cast<T>(pixel_y(b + 1, height, scale)) >= lo) ++b;
  while (b >= 0 && static_cast<T>(pixel_y(b, height, scale)) < lo) --b;
}

// Packed pixel range of a bbox [xmin, xmax) x [ymin, ymax) in multiplied coordinates:
// .x = col_lo | col_hi << 16, .y = row_lo | row_hi << 16; kEmpty on both when no pixel is inside.
template <typename T>
__device__ __forceinline__ uint2 pixel_range(T xmin, T ymin, T xmax, T ymax, int height, int width,
                                             float sx, float sy) {
  if (!(xmin <= xmax) || !(ymin <= ymax)) return make_uint2(kEmpty, kEmpty);  // also NaN
  int c0, c1, r0, r1;
  column_range<T>(xmin, xmax, width, sx, c0, c1);
  row_range<T>(ymin, ymax, height, sy, r0, r1);
  if (c0 > c1 || r0 > r1) return make_uint2(kEmpty, kEmpty);
  return make_uint2(static_cast<unsigned>(c0) | (static_cast<unsigned>(c1) << 16),
                    static_cast<unsigned>(r0) | (static_cast<unsigned>(r1) << 16));
}

__device__ __forceinline__ int range_lo(unsigned r) { return static_cast<int>(r & 0xFFFFu); }
__device__ __forceinline__ int range_hi(unsigned r) { return static_cast<int>(r >> 16); }

__device__ __forceinline__ bool range_hits(uint2 r, int c0, int c1, int r0, int r1) {
  return range_lo(r.x) <= c1 && range_hi(r.x) >= c0 && range_lo(r.y) <= r1 && range_hi(r.y) >= r0;
}
__device__ __forceinline__ bool range_holds(uint2 r, int w, int h) {
  return range_lo(r.x) <= w && w <= range_hi(r.x) && range_lo(r.y) <= h && h <= range_hi(r.y);
}

// Per-face bbox of the multiplied vertices, grown by `grow` (multiplied units), as a pixel range.
template <typename T>
__device__ __forceinline__ uint2 face_pixel_range(const T* __restrict__ v6, T mult, T grow, int height,
                                                  int width, float sx, float sy) {
  const T ax = v6[0] * mult, ay = v6[1] * mult;
  const T bx = v6[2] * mult, by = v6[3] * mult;
  const T cx = v6[4] * mult, cy = v6[5] * mult;
  const T xmin = fmin(fmin(ax, bx), cx) - grow, xmax = fmax(fmax(ax, bx), cx) + grow;
  const T ymin = fmin(fmin(ay, by), cy) - grow, ymax = fmax(fmax(ay, by), cy) + grow;
  return pixel_range<T>(xmin, ymin, xmax, ymax, height, width, sx, sy);
}

// Deterministic warp sum (butterfly; every lane ends with the same value).
template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Block-wide ordered compaction of one 32-lane ballot per warp: returns the slot of this thread's
// element (if `keep`) and the block total in `total`. Order = thread order, i.e. face-index order.
// Caller must __syncthreads() before reusing `warp_count`.
__device__ __forceinline__ int compact_slot(bool keep, int* warp_count, int& total) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const unsigned m = __ballot_sync(0xffffffffu, keep);
  if (lane == 0) warp_count[warp] = __popc(m);
  __syncthreads();
  int base = 0;
  total = 0;
#pragma unroll
  for (int i = 0; i < kWarps; ++i) {
    const int c = warp_count[i];
    base += (i < warp) ? c : 0;
    total += c;
  }
  return base + __popc(m & ((1u << lane) - 1u));
}

}  // namespace cuda
}  // namespace dibr_ros
