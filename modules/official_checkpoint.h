// The official C2C fuser layout (a <pair>_Fuser/ folder: final/projector_{i}.json and .pt,
// final/projector_config.json, config.json beside final/), as published on nics-efc/C2C_Fuser.
#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

#include "modules/fuser_checkpoint.h"

namespace c2c {

// Imports the official layout. `src` is the folder holding projector_config.json (".../final")
// or its parent (then "final/" is used). Every projector is sized from its own JSON, loaded
// strictly, and the first pair per receiver layer is used; each sharer index in
// projector_config.json becomes one FuserSet. Model names come from the recipe config.json
// beside "final/" when it names them (model.base_model / model.teacher_model), else stay empty.
FuserCheckpoint import_official_checkpoint(const std::string& src);

struct OfficialExportOptions {
  torch::Dtype dtype = torch::kBFloat16;  // float32 or bfloat16 (the published checkpoints' dtype)
  std::string recipe_yaml;  // the recipe that trained the fuser, if known: config.json, README.md
  std::string eval_report;  // a `c2c eval` report.json, if any: its accuracies go in README.md
};

// Writes `ckpt` in the official layout into `out_dir` (which must not exist or be empty):
//   final/projector_{i}.pt    torch.save'd state dict of fuser i (published names and shapes, the
//                             0-d gate logits, the gate_temperature buffer), all in
//                             options.dtype as the reference's bf16 module writes them;
//   final/projector_{i}.json  {"class": "C2CProjector", "init_args": {...}} in the reference's
//                             key order, dtype as {"__type__": "torch.dtype", "value": ...};
//   final/projector_config.json  {"0": {"<sharer j + 1>": {"<receiver layer>": [[sharer layer,
//                             i]]}}}, the layer maps in the reference's nesting;
//   config.json               model.base_model / model.teacher_model (where the reference's
//                             loaders look) and the recipe under "c2c";
//   README.md                 a model card: pair, alignment, variant, layer map, data, steps, and
//                             the accuracy of options.eval_report.
// Refused, naming why: a variant the reference cannot run (its projector always gates), an
// out_dir that is not empty, another dtype. Written into a temporary folder and renamed. Returns
// the warnings (e.g. an alignment the reference does not implement; the weights stay meaningful).
std::vector<std::string> export_official_checkpoint(const FuserCheckpoint& ckpt,
                                                    const std::string& out_dir,
                                                    const OfficialExportOptions& options = {});

}  // namespace c2c
