// Public engine API of qwenmux (see src/engine/engine.h).
#pragma once
#include "engine/engine.h"
