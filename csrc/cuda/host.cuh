// Host-side helpers shared by rasterize.cu and soft_mask.cu.
#pragma once

#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "common.cuh"

namespace dibr_ros {
namespace cuda {

inline void check_side(int64_t height, int64_t width, const char* op) {
  TORCH_CHECK(height > 0 && width > 0 && height <= kMaxSide && width <= kMaxSide, op,
              ": height and width must be in [1, ", kMaxSide, "], got ", height, "x", width);
}

inline unsigned grid_batch(int64_t batch) { return static_cast<unsigned>(batch < 65535 ? batch : 65535); }

}  // namespace cuda
}  // namespace dibr_ros
