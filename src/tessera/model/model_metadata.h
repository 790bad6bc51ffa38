#pragma once
// The metadata keys of a Tessera model file (ONNX metadata_props): the writer (model_builder)
// and the one reader (read_model, model_description.h) name every key through these constants.
// What each value means: model_builder.h, "Metadata".

namespace tessera::metadata_key {

// Every file tessera writes: the widths of the architecture (s2_steps/s1_steps 0 when symbolic).
inline constexpr char kDModel[] = "tessera.d_model";
inline constexpr char kLayers[] = "tessera.layers";
inline constexpr char kHeads[] = "tessera.heads";
inline constexpr char kFfn[] = "tessera.ffn";
inline constexpr char kS2Steps[] = "tessera.s2_steps";
inline constexpr char kS1Steps[] = "tessera.s1_steps";
inline constexpr char kS2Bands[] = "tessera.s2_bands";
inline constexpr char kS1Bands[] = "tessera.s1_bands";
inline constexpr char kLatent[] = "tessera.latent";

// Where the weights came from: one of the two.
inline constexpr char kSeed[] = "tessera.seed";              // make-model's seeded random numbers
inline constexpr char kCheckpoint[] = "tessera.checkpoint";  // the checkpoint `import` read

// Every version but v1.0 (a file without kVersion is v1.0).
inline constexpr char kVersion[] = "tessera.version";
inline constexpr char kStats[] = "tessera.stats";
inline constexpr char kOutputDim[] = "tessera.output_dim";
inline constexpr char kPooling[] = "tessera.pooling";
inline constexpr char kFusion[] = "tessera.fusion";
inline constexpr char kFusionHidden[] = "tessera.fusion_hidden";
inline constexpr char kFusionWidth[] = "tessera.fusion_width";
inline constexpr char kFinalNorm[] = "tessera.final_norm";
inline constexpr char kQkNorm[] = "tessera.qk_norm";

}  // namespace tessera::metadata_key
