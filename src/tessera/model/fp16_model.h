#pragma once
// Float16 versions of float32 ONNX models, for `--precision fp16` on CUDA devices.
//
// The converted graph keeps the model's float32 inputs and outputs (Casts at its edges) and
// computes in float16 everywhere except where float16 would lose what matters: every Sin and Cos
// node and every node upstream of one (the day-of-year encoding: an angle of ~366 radians has a
// float16 step of 0.25, which would scramble sin/cos). Float weights and constants become
// float16 when every node that reads them computes in float16. Tensors that are not float
// (shapes, axes, indices) are left alone, and so are the nodes that make float32 from other
// types (Cast to float, ConstantOfShape): their outputs are read like graph inputs.
//
// Invariants of the result: a node reads float tensors of its own precision only (a Cast is
// inserted on every edge that crosses); nodes stay in topological order; graph inputs and outputs
// keep their names and float32 types; value_info is dropped (ONNX Runtime infers it again).

#include <onnx/onnx_pb.h>

#include <string>

namespace tessera {

// Converts `model` in place. Throws Error, naming `what` (a file name), for an operator whose
// float semantics the converter does not know, or a weight beyond float16's range.
void convert_to_fp16(onnx::ModelProto& model, const std::string& what);

// Reads the model at `path`, converts it, and returns it serialized (for a session built from
// memory). Throws Error naming the file.
std::string fp16_model_bytes(const std::string& path);

}  // namespace tessera
