// Operator schemas of the dibr_ros extension (registered once; CPU and CUDA
// implementations live in cpu/ and cuda/ and register with TORCH_LIBRARY_IMPL).
//
// Conventions (see dibr_ros/render/rasterize.py for the full contract):
//   face_vertices_z     (B, F, 3)     camera-space z, larger is nearer
//   face_vertices_image (B, F, 3, 2)  NDC x, y in [-1, 1], +y up
//   face_features       (B, F, 3, D)
//   face_normals_z      (B, F)        faces with < 0 are not rasterized
//   face_idx            (B, H, W)     int64, -1 = background
// "saved" lists are backend-private state handed from forward to backward.
#include <ATen/ATen.h>
#include <torch/library.h>

namespace dibr_ros {

// Pixel centres in NDC, (H, W, 2): x = (2w + 1 - W) / W, y = (H - 2h - 1) / H.
// A tiny op that proves the build/registration plumbing on every machine.
at::Tensor pixel_centers(int64_t height, int64_t width) {
  TORCH_CHECK(height > 0 && width > 0, "pixel_centers: height and width must be positive");
  auto xs = (at::arange(width, at::kDouble) * 2 + 1 - width) / static_cast<double>(width);
  auto ys = (height - at::arange(height, at::kDouble) * 2 - 1) / static_cast<double>(height);
  auto grid = at::stack({xs.unsqueeze(0).expand({height, width}),
                         ys.unsqueeze(1).expand({height, width})}, -1);
  return grid.to(at::kFloat).contiguous();
}

}  // namespace dibr_ros

TORCH_LIBRARY(dibr_ros, m) {
  m.def("pixel_centers(int height, int width) -> Tensor", &dibr_ros::pixel_centers);
  m.def("rasterize_forward(Tensor face_vertices_z, Tensor face_vertices_image, Tensor face_features, "
        "Tensor face_normals_z, int height, int width, float multiplier, float eps) "
        "-> (Tensor features, Tensor face_idx, Tensor weights)");
  m.def("rasterize_backward(Tensor grad_features, Tensor face_idx, Tensor weights, "
        "Tensor face_vertices_image, Tensor face_features, float multiplier, float eps) "
        "-> (Tensor grad_face_vertices_image, Tensor grad_face_features)");
  m.def("soft_mask_forward(Tensor face_vertices_image, Tensor face_idx, float sigmainv, float boxlen, "
        "int knum, float multiplier) -> (Tensor soft_mask, Tensor[] saved)");
  m.def("soft_mask_backward(Tensor grad_soft_mask, Tensor soft_mask, Tensor face_vertices_image, "
        "Tensor face_idx, Tensor[] saved, float sigmainv, float boxlen, int knum, float multiplier) "
        "-> Tensor");
}
