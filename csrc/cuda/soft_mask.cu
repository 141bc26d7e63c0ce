// DIB-R soft mask, CUDA: soft_mask_forward / soft_mask_backward of csrc/dibr_ops.cpp.
//
// Forward: tile blocks as in rasterize.cu, over ALL faces (no culling) with the bbox grown by boxlen.
// A background pixel takes the first knum faces in index order whose grown bbox holds it, and
// A = 1 - prod(1 - exp(-sigmainv d^2 / M^2)); covered pixels get 1. A block stops walking faces
// once every pixel of its tile is covered or full.
//
// Instead of Kaolin's per-pixel candidate lists (13 B/pixel/k) the forward saves one int32 per pixel:
// the index of the pixel's knum-th candidate (or INT_MAX when it has fewer). The candidates of a
// pixel are then exactly {f : grown bbox of f holds it, f <= last}, which the backward recomputes
// while gathering per face (one warp per face, fixed order, no atomics: deterministic).
#include "host.cuh"
#include "soft_mask_kernels.cuh"


namespace dibr_ros {
namespace cuda {
namespace {

void check_inputs(const at::Tensor& fvi, const at::Tensor& face_idx, const char* op) {
  TORCH_CHECK(fvi.is_cuda(), op, ": face_vertices_image must be a CUDA tensor");
  TORCH_CHECK(fvi.dim() == 4 && fvi.size(2) == 3 && fvi.size(3) == 2, op,
              ": face_vertices_image must be (B, F, 3, 2), got ", fvi.sizes());
  TORCH_CHECK(fvi.scalar_type() == at::kFloat || fvi.scalar_type() == at::kDouble, op,
              ": float32 or float64 expected, got ", fvi.scalar_type());
  TORCH_CHECK(fvi.size(1) < (int64_t{1} << 31), op, ": too many faces");
  TORCH_CHECK(face_idx.dim() == 3 && face_idx.size(0) == fvi.size(0) && face_idx.scalar_type() == at::kLong &&
                  face_idx.device() == fvi.device(),
              op, ": face_idx must be int64 (B, H, W) on the same device, got ", face_idx.sizes(), " ",
              face_idx.scalar_type());
  check_side(face_idx.size(1), face_idx.size(2), op);
}

std::tuple<at::Tensor, std::vector<at::Tensor>> soft_mask_forward_cuda(const at::Tensor& face_vertices_image,
                                                                       const at::Tensor& face_idx, double sigmainv,
                                                                       double boxlen, int64_t knum,
                                                                       double multiplier) {
  const char* op = "soft_mask_forward";
  check_inputs(face_vertices_image, face_idx, op);
  TORCH_CHECK(knum >= 0 && knum <= INT_MAX, op, ": knum must be >= 0, got ", knum);
  const int64_t B = face_vertices_image.size(0), F = face_vertices_image.size(1);
  const int64_t H = face_idx.size(1), W = face_idx.size(2);
  const c10::cuda::CUDAGuard guard(face_vertices_image.device());
  const auto fvi = face_vertices_image.contiguous();
  const auto fidx = face_idx.contiguous();
  auto soft_mask = at::empty({B, H, W}, fvi.options());
  auto last = at::empty({B, H, W}, fvi.options().dtype(at::kInt));
  if (B == 0) return {soft_mask, {last}};
  auto ranges = at::empty({B * F * 2}, fvi.options().dtype(at::kInt));
  const auto stream = c10::cuda::getCurrentCUDAStream();
  const int tiles_x = static_cast<int>((W + kTile - 1) / kTile);
  const int tiles_y = static_cast<int>((H + kTile - 1) / kTile);
  AT_DISPATCH_FLOATING_TYPES(fvi.scalar_type(), "soft_mask_forward_cuda", [&] {
    uint2* rng = reinterpret_cast<uint2*>(ranges.data_ptr<int>());
    const int64_t num = B * F;
    if (num > 0) {
      soft_ranges_kernel<scalar_t><<<static_cast<unsigned>((num + 255) / 256), 256, 0, stream>>>(
          fvi.data_ptr<scalar_t>(), rng, num, static_cast<int>(H), static_cast<int>(W),
          static_cast<float>(multiplier), static_cast<scalar_t>(multiplier),
          static_cast<scalar_t>(boxlen * multiplier));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    const dim3 grid(static_cast<unsigned>(tiles_x * tiles_y), grid_batch(B));
    soft_forward_kernel<scalar_t><<<grid, kBlock, 0, stream>>>(
        fvi.data_ptr<scalar_t>(), fidx.data_ptr<int64_t>(), rng, soft_mask.data_ptr<scalar_t>(),
        last.data_ptr<int>(), static_cast<int>(B), static_cast<int>(F), static_cast<int>(H), static_cast<int>(W),
        static_cast<int>(knum), tiles_x, static_cast<float>(multiplier), static_cast<scalar_t>(multiplier),
        static_cast<scalar_t>(static_cast<float>(sigmainv)));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {soft_mask, {last}};
}

at::Tensor soft_mask_backward_cuda(const at::Tensor& grad_soft_mask, const at::Tensor& soft_mask,
                                   const at::Tensor& face_vertices_image, const at::Tensor& face_idx,
                                   at::TensorList saved, double sigmainv, double boxlen, int64_t knum,
                                   double multiplier) {
  const char* op = "soft_mask_backward";
  check_inputs(face_vertices_image, face_idx, op);
  const int64_t B = face_vertices_image.size(0), F = face_vertices_image.size(1);
  const int64_t H = face_idx.size(1), W = face_idx.size(2);
  TORCH_CHECK(saved.size() == 1 && saved[0].scalar_type() == at::kInt &&
                  saved[0].sizes() == at::IntArrayRef({B, H, W}) && saved[0].device() == face_idx.device(),
              op, ": `saved` must be the list returned by the CUDA soft_mask_forward");
  for (const at::Tensor* t : {&grad_soft_mask, &soft_mask})
    TORCH_CHECK(t->sizes() == at::IntArrayRef({B, H, W}) && t->scalar_type() == face_vertices_image.scalar_type() &&
                    t->device() == face_vertices_image.device(),
                op, ": grad_soft_mask and soft_mask must be (B, H, W) like face_vertices_image, got ", t->sizes());
  (void)knum;  // the candidate cut-off is encoded in saved[0]
  const c10::cuda::CUDAGuard guard(face_vertices_image.device());
  const auto g = grad_soft_mask.contiguous(), a = soft_mask.contiguous(), fvi = face_vertices_image.contiguous();
  const auto fidx = face_idx.contiguous(), last = saved[0].contiguous();
  auto grad_fvi = at::empty_like(fvi);
  const int64_t num = B * F;
  if (num == 0) return grad_fvi;
  const auto stream = c10::cuda::getCurrentCUDAStream();
  const unsigned blocks = static_cast<unsigned>((num * 32 + kGatherBlock - 1) / kGatherBlock);
  AT_DISPATCH_FLOATING_TYPES(fvi.scalar_type(), "soft_mask_backward_cuda", [&] {
    soft_backward_kernel<scalar_t><<<blocks, kGatherBlock, 0, stream>>>(
        g.data_ptr<scalar_t>(), a.data_ptr<scalar_t>(), fidx.data_ptr<int64_t>(), last.data_ptr<int>(),
        fvi.data_ptr<scalar_t>(), grad_fvi.data_ptr<scalar_t>(), num, static_cast<int>(F), static_cast<int>(H),
        static_cast<int>(W), static_cast<float>(multiplier), static_cast<scalar_t>(multiplier),
        static_cast<scalar_t>(boxlen * multiplier), static_cast<scalar_t>(static_cast<float>(sigmainv)));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return grad_fvi;
}

}  // namespace
}  // namespace cuda
}  // namespace dibr_ros

TORCH_LIBRARY_IMPL(dibr_ros, CUDA, m) {
  m.impl("soft_mask_forward", &dibr_ros::cuda::soft_mask_forward_cuda);
  m.impl("soft_mask_backward", &dibr_ros::cuda::soft_mask_backward_cuda);
}
