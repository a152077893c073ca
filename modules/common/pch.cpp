#include "modules/common/pch.h"
