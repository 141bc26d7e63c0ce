// DIB-R rasterization, CUDA: rasterize_forward / rasterize_backward of csrc/dibr_ops.cpp.
//
// Forward: one 256-thread block per (16x16 tile, batch item), one thread per pixel. The block walks
// the faces in chunks of 256 in index order; each thread tests one face's exact pixel range (see
// common.cuh) against the tile, survivors are compacted in index order into shared memory, then every
// pixel runs Kaolin's test (bbox, edge-function barycentrics normalised by sum + copysign(eps),
// inside iff all w >= 0, keep the largest z with a strict >) on that short list only. Face order is
// preserved, so ties resolve to the first face exactly as in Kaolin; no global bins, no host sync.
//
// Backward: one warp per face gathers over the pixels of the face's bbox (fixed lane-strided order,
// butterfly warp reduction), so gradients are deterministic and need no atomics and no zero-fill.
// The gradient is the exact derivative of the forward weights w_i = e_i / N (N = sum e + copysign):
// dL/dtheta = sum_i U_i (de_i/dtheta - W_i dS/dtheta) / N with U_i = <dL/dI, u_i>.
#include "host.cuh"
#include "raster_kernels.cuh"

namespace dibr_ros {
namespace cuda {
namespace {

void check_faces(const at::Tensor& fvi, const at::Tensor& ff, const char* op) {
  TORCH_CHECK(fvi.is_cuda(), op, ": face_vertices_image must be a CUDA tensor");
  TORCH_CHECK(fvi.dim() == 4 && fvi.size(2) == 3 && fvi.size(3) == 2, op,
              ": face_vertices_image must be (B, F, 3, 2), got ", fvi.sizes());
  TORCH_CHECK(fvi.scalar_type() == at::kFloat || fvi.scalar_type() == at::kDouble, op,
              ": float32 or float64 expected, got ", fvi.scalar_type());
  TORCH_CHECK(ff.dim() == 4 && ff.size(0) == fvi.size(0) && ff.size(1) == fvi.size(1) && ff.size(2) == 3,
              op, ": face_features must be (B, F, 3, D), got ", ff.sizes());
  TORCH_CHECK(ff.scalar_type() == fvi.scalar_type() && ff.device() == fvi.device(), op,
              ": face_features must match face_vertices_image in dtype and device");
  TORCH_CHECK(fvi.size(1) < (int64_t{1} << 31), op, ": too many faces");
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> rasterize_forward_cuda(
    const at::Tensor& face_vertices_z, const at::Tensor& face_vertices_image, const at::Tensor& face_features,
    const at::Tensor& face_normals_z, int64_t height, int64_t width, double multiplier, double eps) {
  const char* op = "rasterize_forward";
  check_faces(face_vertices_image, face_features, op);
  check_side(height, width, op);
  const int64_t B = face_vertices_image.size(0), F = face_vertices_image.size(1), D = face_features.size(3);
  TORCH_CHECK(face_vertices_z.dim() == 3 && face_vertices_z.size(0) == B && face_vertices_z.size(1) == F &&
                  face_vertices_z.size(2) == 3,
              op, ": face_vertices_z must be (B, F, 3), got ", face_vertices_z.sizes());
  TORCH_CHECK(face_normals_z.dim() == 2 && face_normals_z.size(0) == B && face_normals_z.size(1) == F, op,
              ": face_normals_z must be (B, F), got ", face_normals_z.sizes());
  for (const at::Tensor* t : {&face_vertices_z, &face_normals_z})
    TORCH_CHECK(t->scalar_type() == face_vertices_image.scalar_type() && t->device() == face_vertices_image.device(),
                op, ": all inputs must share dtype and device");

  const c10::cuda::CUDAGuard guard(face_vertices_image.device());
  const auto fvz = face_vertices_z.contiguous(), fvi = face_vertices_image.contiguous();
  const auto ff = face_features.contiguous(), fnz = face_normals_z.contiguous();
  const auto opts = fvi.options();
  auto features = at::empty({B, height, width, D}, opts);
  auto face_idx = at::empty({B, height, width}, opts.dtype(at::kLong));
  auto weights = at::empty({B, height, width, 3}, opts);
  if (B == 0) return {features, face_idx, weights};
  auto ranges = at::empty({B * F * 2}, opts.dtype(at::kInt));

  const auto stream = c10::cuda::getCurrentCUDAStream();
  const int tiles_x = static_cast<int>((width + kTile - 1) / kTile);
  const int tiles_y = static_cast<int>((height + kTile - 1) / kTile);
  AT_DISPATCH_FLOATING_TYPES(fvi.scalar_type(), "rasterize_forward_cuda", [&] {
    uint2* rng = reinterpret_cast<uint2*>(ranges.data_ptr<int>());
    const int64_t num = B * F;
    if (num > 0) {
      raster_ranges_kernel<scalar_t><<<static_cast<unsigned>((num + 255) / 256), 256, 0, stream>>>(
          fvi.data_ptr<scalar_t>(), fnz.data_ptr<scalar_t>(), rng, num, static_cast<int>(height),
          static_cast<int>(width), static_cast<float>(multiplier), static_cast<scalar_t>(multiplier));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    const dim3 grid(static_cast<unsigned>(tiles_x * tiles_y), grid_batch(B));
    raster_forward_kernel<scalar_t><<<grid, kBlock, 0, stream>>>(
        fvz.data_ptr<scalar_t>(), fvi.data_ptr<scalar_t>(), ff.data_ptr<scalar_t>(), rng,
        features.data_ptr<scalar_t>(), face_idx.data_ptr<int64_t>(), weights.data_ptr<scalar_t>(),
        static_cast<int>(B), static_cast<int>(F), static_cast<int>(height), static_cast<int>(width),
        static_cast<int>(D), tiles_x, static_cast<float>(multiplier), static_cast<scalar_t>(multiplier),
        static_cast<scalar_t>(static_cast<float>(eps)));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {features, face_idx, weights};
}

std::tuple<at::Tensor, at::Tensor> rasterize_backward_cuda(const at::Tensor& grad_features,
                                                           const at::Tensor& face_idx, const at::Tensor& weights,
                                                           const at::Tensor& face_vertices_image,
                                                           const at::Tensor& face_features, double multiplier,
                                                           double eps) {
  const char* op = "rasterize_backward";
  check_faces(face_vertices_image, face_features, op);
  const int64_t B = face_vertices_image.size(0), F = face_vertices_image.size(1), D = face_features.size(3);
  TORCH_CHECK(face_idx.dim() == 3 && face_idx.size(0) == B && face_idx.scalar_type() == at::kLong, op,
              ": face_idx must be int64 (B, H, W), got ", face_idx.sizes(), " ", face_idx.scalar_type());
  const int64_t H = face_idx.size(1), W = face_idx.size(2);
  check_side(H, W, op);
  TORCH_CHECK(grad_features.sizes() == at::IntArrayRef({B, H, W, D}), op,
              ": grad_features must be (B, H, W, D), got ", grad_features.sizes());
  TORCH_CHECK(weights.sizes() == at::IntArrayRef({B, H, W, 3}), op, ": weights must be (B, H, W, 3), got ",
              weights.sizes());
  for (const at::Tensor* t : {&grad_features, &weights})
    TORCH_CHECK(t->scalar_type() == face_vertices_image.scalar_type() && t->device() == face_vertices_image.device(),
                op, ": all float inputs must share dtype and device");
  TORCH_CHECK(face_idx.device() == face_vertices_image.device(), op, ": face_idx on another device");

  const c10::cuda::CUDAGuard guard(face_vertices_image.device());
  const auto g = grad_features.contiguous(), fidx = face_idx.contiguous(), wts = weights.contiguous();
  const auto fvi = face_vertices_image.contiguous(), ff = face_features.contiguous();
  auto grad_fvi = at::empty_like(fvi);
  auto grad_ff = at::empty_like(ff);
  const int64_t num = B * F;
  if (num == 0) return {grad_fvi, grad_ff};
  const auto stream = c10::cuda::getCurrentCUDAStream();
  const unsigned blocks = static_cast<unsigned>((num * 32 + kGatherBlock - 1) / kGatherBlock);
  AT_DISPATCH_FLOATING_TYPES(fvi.scalar_type(), "rasterize_backward_cuda", [&] {
    auto launch = [&](auto dc) {
      constexpr int DC = decltype(dc)::value;
      raster_backward_kernel<scalar_t, DC><<<blocks, kGatherBlock, 0, stream>>>(
          g.data_ptr<scalar_t>(), fidx.data_ptr<int64_t>(), wts.data_ptr<scalar_t>(), fvi.data_ptr<scalar_t>(),
          ff.data_ptr<scalar_t>(), grad_fvi.data_ptr<scalar_t>(), grad_ff.data_ptr<scalar_t>(), num,
          static_cast<int>(F), static_cast<int>(H), static_cast<int>(W), static_cast<int>(D),
          static_cast<float>(multiplier), static_cast<scalar_t>(multiplier),
          static_cast<scalar_t>(static_cast<float>(eps)));
    };
    if (D <= 4)
      launch(std::integral_constant<int, 4>{});
    else
      launch(std::integral_constant<int, 8>{});
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {grad_fvi, grad_ff};
}

}  // namespace
}  // namespace cuda
}  // namespace dibr_ros

TORCH_LIBRARY_IMPL(dibr_ros, CUDA, m) {
  m.impl("rasterize_forward", &dibr_ros::cuda::rasterize_forward_cuda);
  m.impl("rasterize_backward", &dibr_ros::cuda::rasterize_backward_cuda);
}
