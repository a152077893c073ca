// Every case of the op table (op_table.h), published widths included, on CUDA in fp32 and bf16
// against the CPU reference in double on the same rounded inputs: forward and every gradient.
// The tolerances are each case's (op_table.h). Skips without a GPU or without the kernels.
#include "tests/kernels/gpu_test_util.h"
#include "tests/kernels/op_table.h"

namespace {
namespace k = c2c::kernels;

TEST(KernelOpsGpu, EveryOpMatchesTheReference) {
  C2C_REQUIRE_CUDA_KERNELS();
  torch::manual_seed(41);
  const k::ScopedOpPath reference(k::OpPath::reference);  // the CPU side is the reference
  for (const auto& c : c2c::test::op_cases(/*large=*/true)) {
    c2c::test::compare_cuda_with_reference(c.op, c.inputs, c.upstream, torch::kFloat32,
                                           {c.fp32.atol_scale, c.fp32.rtol}, "fp32 " + c.name);
    c2c::test::compare_cuda_with_reference(c.op, c.inputs, c.upstream, torch::kBFloat16,
                                           {c.bf16.atol_scale, c.bf16.rtol}, "bf16 " + c.name);
  }
}

}  // namespace
