// A minimal reader of torch.save'd state dicts, the format of the official fuser checkpoints.
#pragma once
#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

namespace c2c {

// The tensors of a torch.save'd state dict (zip format: data.pkl + data/<key>), in file order.
// A minimal unpickler for what state dicts contain (OrderedDict, _rebuild_tensor_v2,
// _rebuild_parameter, persistent storages); LibTorch 1.13's pickle_load turns OrderedDict into
// None, so it cannot read these.
std::vector<std::pair<std::string, torch::Tensor>> read_torch_state_dict(const std::string& path);

}  // namespace c2c
