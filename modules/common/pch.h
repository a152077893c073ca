// The precompiled header: LibTorch plus the standard headers almost every file uses.
#pragma once
#include <torch/torch.h>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>
#include <map>
#include <memory>
#include <stdexcept>
