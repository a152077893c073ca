#include "modules/device.h"

#include "modules/common/error.h"

namespace c2c {

torch::Device resolve_device(const std::string& name, const std::string& where) {
  if (name == "cpu") return torch::kCPU;
  if (name == "auto")
    return torch::cuda::is_available() ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
  if (name == "cuda" || name.rfind("cuda:", 0) == 0) {
    int64_t index = 0;
    if (name.size() > 5) {
      char* end = nullptr;
      index = std::strtol(name.c_str() + 5, &end, 10);
      C2C_CHECK(end && *end == '\0' && index >= 0, where, " = '", name,
                "' is not a device\nHINT: use auto, cpu, cuda or cuda:N");
    }
    C2C_CHECK(torch::cuda::is_available(), where, " = '", name, "' but no CUDA device is visible "
              "to LibTorch\nHINT: use cpu (or auto), or run on a machine with an NVIDIA GPU and driver");
    const auto n = static_cast<int64_t>(torch::cuda::device_count());
    C2C_CHECK(index < n, where, " = '", name, "' but this machine has ", n, " CUDA device(s)");
    return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
  }
  fail(where, " = '", name, "' is not a device\nHINT: use auto, cpu, cuda or cuda:N");
}

torch::Dtype resolve_dtype(const std::string& name, torch::Device device, const std::string& where) {
  if (name == "float32" || name == "fp32") return torch::kFloat32;
  if (name == "bfloat16" || name == "bf16") return torch::kBFloat16;
  if (name == "auto") return device.is_cuda() ? torch::kBFloat16 : torch::kFloat32;
  fail(where, " = '", name, "' is not a compute dtype\nHINT: use auto, float32 or bfloat16");
}

}  // namespace c2c
