// torch.save'd state dicts, the format of the official fuser checkpoints, both directions: a
// minimal unpickler and its writer, in one module. Why not LibTorch's own
// torch::jit::pickle_load / pickle_save (measured on LibTorch 2.15): pickle_load returns None
// for the published files' OrderedDict (the committed fixture of make_official_checkpoint.py
// included); pickle_save writes a plain dict wrapped in torch.jit._pickle.restore_type_tag, with
// no OrderedDict and no _metadata, which torch.load(..., weights_only=True) refuses.
#pragma once
#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

namespace c2c {

// The tensors of a torch.save'd state dict (zip format: data.pkl + data/<key>), in file order.
// A minimal unpickler for what state dicts contain (OrderedDict, _rebuild_tensor_v2,
// _rebuild_parameter, persistent storages).
std::vector<std::pair<std::string, torch::Tensor>> read_torch_state_dict(const std::string& path);

// Writes `tensors` (name, tensor; any device, made contiguous on the CPU) as
// torch.save(module.state_dict(), path) does: the zip archive <stem>/data.pkl (an OrderedDict
// with _metadata, pickle protocol 2), <stem>/data/N raw storages, .format_version,
// .storage_alignment, byteorder, version, .data/serialization_id; loadable by
// torch.load(path, weights_only=True) and by read_torch_state_dict. Written to `path`.tmp and
// renamed.
void write_torch_state_dict(const std::string& path,
                            const std::vector<std::pair<std::string, torch::Tensor>>& tensors);

}  // namespace c2c
