#include "tessera/engine/engine.h"

#include <fmt/format.h>

namespace tessera {

void Engine::set_steps(int64_t s2_steps, int64_t s1_steps) {
  const ModelShape& s = shape();
  if (!s.symbolic_steps) {
    if (s2_steps != s.s2_steps || s1_steps != s.s1_steps) {
      throw Error(fmt::format("{}: the model takes exactly {} S2 and {} S1 steps, not {} and {}",
                              name(), s.s2_steps, s.s1_steps, s2_steps, s1_steps));
    }
    return;
  }
  if (s2_steps < 1 || s2_steps > s.s2_steps || s1_steps < 1 || s1_steps > s.s1_steps) {
    throw Error(fmt::format("{}: {} S2 and {} S1 steps are outside 1..{} and 1..{}", name(),
                            s2_steps, s1_steps, s.s2_steps, s.s1_steps));
  }
  s2_steps_ = s2_steps;
  s1_steps_ = s1_steps;
}

}  // namespace tessera
