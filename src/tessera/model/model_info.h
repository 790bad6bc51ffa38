#pragma once
// Facts read from an ONNX file without running it: shorthands of read_model
// (model_description.h), and the check of a model's weights.

#include <string>

#include "tessera/model/model_description.h"

namespace onnx {
class ModelProto;
}

namespace tessera {

// read_model(path).graph. Throws what read_model throws.
ModelFileInfo read_model_info(const std::string& path);

// read_model(path).io(): the graph's inputs and output, exactly `s2_input` [B, T2, F2] and
// `s1_input` [B, T1, F1] (either order) and one `output` [B, D], float32, every dimension but B
// fixed. Throws Error naming the file and the first tensor that differs, its shape printed with
// symbolic dimensions by name ("[batch, steps, 11]").
ModelShape read_model_shape(const std::string& path);

// Every engine checks its model's weights before it computes with them (a NaN or an infinity
// would be hidden by a ReLU on one backend and surface on another). Scans every float
// initializer (float32, float64, float16, bfloat16; raw or typed data) once, in order, and
// throws Error with one line for the first value that is not finite:
//   "<path>: weight <name> holds NaN (element <i>)"  or  "... holds infinity (element <i>)"
// with <i> the flat index into the initializer. About 20 ms for the 45.8 M-parameter v1.0 model.
void check_finite_weights(const onnx::ModelProto& model, const std::string& path);
// The same for the file at `path`: read_model(path).check_finite_weights(), from the one parse
// read_model makes of it (the next engine does not read the file again). Throws Error naming
// the file when it cannot be read or parsed.
void check_finite_weights(const std::string& path);

}  // namespace tessera
