#pragma once
// Small Tessera-architecture models for tests that run an engine (link tessera_model).

#include <onnx/onnx_pb.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "tessera/model/model_builder.h"

namespace tessera::testing {

// d_model 32, one layer of 2 heads, FFN 64: runs in milliseconds. Steps as given.
inline ModelConfig tiny_model_config(int s2_steps = 40, int s1_steps = 40) {
  ModelConfig config;
  config.d_model = 32;
  config.layers = 1;
  config.heads = 2;
  config.ffn = 64;
  config.s2_steps = s2_steps;
  config.s1_steps = s1_steps;
  return config;
}

// Writes `config` to dir/name, replacing any file there, and returns the path. The file is
// replaced atomically (write_model renames a complete file into place), so tests running as
// parallel processes may write and read the same model at once.
inline std::string write_test_model(const std::string& dir, const std::string& name,
                                    const ModelConfig& config) {
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/" + name;
  write_model(config, path);
  return path;
}

// Declares `value` as a float32 tensor [batch, dims...] named `name` (a graph input or output).
inline void declare_batched_float(onnx::ValueInfoProto* value, const std::string& name,
                                  std::initializer_list<int64_t> dims) {
  value->set_name(name);
  auto* tensor = value->mutable_type()->mutable_tensor_type();
  tensor->set_elem_type(onnx::TensorProto::FLOAT);
  tensor->mutable_shape()->add_dim()->set_dim_param("batch");
  for (const int64_t d : dims) tensor->mutable_shape()->add_dim()->set_dim_value(d);
}

// A model with the Tessera inputs (s2_input [B, 40, 11], s1_input [B, 40, 3]) and output
// ([B, 128]: the first 128 of each pixel's S2 values) that loads everywhere but fails at run
// time unless B is a multiple of `multiple` (a Reshape to rows of `multiple` pixels): a case
// that fails for some batch sizes only. Returns the path.
inline std::string write_batch_multiple_model(const std::string& dir, const std::string& name,
                                              int multiple) {
  onnx::ModelProto model;
  model.set_ir_version(8);
  model.add_opset_import()->set_version(17);
  auto* graph = model.mutable_graph();
  graph->set_name("batch_multiple");
  declare_batched_float(graph->add_input(), "s2_input", {40, 11});
  declare_batched_float(graph->add_input(), "s1_input", {40, 3});
  declare_batched_float(graph->add_output(), "output", {128});
  auto add_ints = [&](const char* name, std::initializer_list<int64_t> values) {
    auto* tensor = graph->add_initializer();
    tensor->set_name(name);
    tensor->set_data_type(onnx::TensorProto::INT64);
    tensor->add_dims(static_cast<int64_t>(values.size()));
    for (const int64_t v : values) tensor->add_int64_data(v);
  };
  add_ints("groups", {-1, 440 * multiple});
  add_ints("rows", {-1, 440});
  add_ints("starts", {0});
  add_ints("ends", {128});
  add_ints("axes", {1});
  auto add_node = [&](const char* op, std::initializer_list<const char*> inputs,
                      const char* output) {
    auto* node = graph->add_node();
    node->set_op_type(op);
    for (const char* input : inputs) node->add_input(input);
    node->add_output(output);
  };
  add_node("Reshape", {"s2_input", "groups"}, "grouped");
  add_node("Reshape", {"grouped", "rows"}, "flat");
  add_node("Slice", {"flat", "starts", "ends", "axes"}, "output");
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/" + name;
  const std::string partial = path + ".partial";
  {
    std::ofstream out(partial, std::ios::binary);
    model.SerializeToOstream(&out);
  }
  std::filesystem::rename(partial, path);  // atomic, like write_test_model
  return path;
}

}  // namespace tessera::testing
