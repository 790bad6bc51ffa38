#pragma once
// The shape of a Tessera-architecture model (docs/MODEL.md). The defaults are
// Tessera v1.0: 45,828,226 parameters, ~3.676 GFLOP per pixel at 40 steps.

#include <cstdint>

namespace tessera {

struct ModelConfig {
  int d_model = 512;  // transformer width (latent 128 x 4)
  int layers = 4;     // encoder layers per branch
  int heads = 4;      // attention heads (head dim = d_model / heads)
  int ffn = 4096;     // feed-forward width
  int s2_steps = 40;  // sampled time steps, Sentinel-2 branch
  int s1_steps = 40;  // sampled time steps, Sentinel-1 branch
  int s2_bands = 10;  // input bands (the day-of-year column comes on top)
  int s1_bands = 2;
  int latent = 128;    // output embedding width
  uint64_t seed = 42;  // weights: every tensor drawn from its own seeded stream
};

}  // namespace tessera
