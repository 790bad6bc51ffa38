#pragma once
// Facts read from an ONNX file without running it.

#include <cstdint>
#include <string>

namespace onnx {
class ModelProto;
}

namespace tessera {

// The most time steps a run of a model with symbolic step axes takes: the largest length
// bucket of v1.1 and v2 (docs/PIPELINE.md).
constexpr int64_t kMaxModelSteps = 256;

// The tensor shapes a Tessera model takes and gives, read from the model file itself.
// With symbolic step axes (v1.0 early, v1.1 and v2 files) a run takes any step count from 1 to
// kMaxModelSteps (Engine::set_steps); s2_steps and s1_steps then hold kMaxModelSteps, the
// capacity every input buffer is sized for.
struct ModelShape {
  int64_t s2_steps = 40;     // s2_input [B, s2_steps, s2_features]
  int64_t s2_features = 11;  // bands + day of year
  int64_t s1_steps = 40;     // s1_input [B, s1_steps, s1_features]
  int64_t s1_features = 3;
  int64_t output_dim = 128;  // output [B, output_dim]
  int64_t batch = -1;        // B: -1 when dynamic (symbolic), else the only batch it takes
  bool symbolic_steps = false;

  int64_t s2_pixel_floats() const { return s2_steps * s2_features; }
  int64_t s1_pixel_floats() const { return s1_steps * s1_features; }
};

struct ModelFileInfo {
  int64_t parameters = 0;  // elements of all initializers
  int64_t nodes = 0;       // nodes of the main graph
  int64_t opset = 0;       // default-domain opset
  bool has_scatter_nd = false;
  // A float16 initializer or a Cast to float16: a model that computes in float16 (as
  // `tessera convert-model` writes them), whatever precision an engine is asked for.
  bool has_float16 = false;
};

// Throws tessera::Error naming the file if it cannot be read or parsed as an ONNX model.
ModelFileInfo read_model_info(const std::string& path);

// Reads the graph's inputs and output with protobuf alone (no runtime): exactly `s2_input`
// [B, T2, F2] and `s1_input` [B, T1, F1] (either order) and one `output` [B, D], float32, every
// dimension but B fixed. Throws Error naming the file and the first tensor that differs, its
// shape printed with symbolic dimensions by name ("[batch, steps, 11]").
ModelShape read_model_shape(const std::string& path);

// Every engine checks its model's weights before it computes with them (a NaN or an infinity
// would be hidden by a ReLU on one backend and surface on another). Scans every float
// initializer (float32, float64, float16, bfloat16; raw or typed data) once, in order, and
// throws Error with one line for the first value that is not finite:
//   "<path>: weight <name> holds NaN (element <i>)"  or  "... holds infinity (element <i>)"
// with <i> the flat index into the initializer. About 20 ms for the 45.8 M-parameter v1.0 model.
void check_finite_weights(const onnx::ModelProto& model, const std::string& path);
// The same for the file at `path`, from the one parse read_model_shape makes of it (kept per
// path, size and modification time: the next engine does not read the file again). Throws Error
// naming the file when it cannot be read or parsed.
void check_finite_weights(const std::string& path);

}  // namespace tessera
