#pragma once

#include <cstdint>

#include "tessera/engine/engine.h"

namespace tessera {

// Fills an engine's whole input buffers (max_batch pixels) with benchmark inputs: bands drawn
// from N(0, 1), the last column of every step a day of year in 1..365, ascending within a
// pixel. Deterministic in seed.
void fill_dummy_inputs(Engine& engine, uint64_t seed);

}  // namespace tessera
