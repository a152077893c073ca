// The official C2C fuser layout (a <pair>_Fuser/ folder: final/projector_{i}.json and .pt,
// final/projector_config.json, config.json beside final/), as published on nics-efc/C2C_Fuser.
#pragma once
#include <string>

#include "modules/fuser_checkpoint.h"

namespace c2c {

// Imports the official layout. `src` is the folder holding projector_config.json (".../final")
// or its parent (then "final/" is used). Every projector is sized from its own JSON, loaded
// strictly, and the first pair per receiver layer is used; each sharer index in
// projector_config.json becomes one FuserSet. Model names come from the recipe config.json
// beside "final/" when it names them (model.base_model / model.teacher_model), else stay empty.
FuserCheckpoint import_official_checkpoint(const std::string& src);

}  // namespace c2c
