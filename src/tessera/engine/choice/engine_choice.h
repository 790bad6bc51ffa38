#pragma once
// The typed choices of an engine: the precision it computes at and the device it runs on. The
// CLI parses each once (parse_precision, parse_device); below it they travel as these types, and
// become text only to be printed (journal keys, summaries, bench rows, profiles).
//
//   precision  fp32 | tf32 | fp16 | bf16 | int8    (precision_choices(): one list for all)
//   device     cpu | cuda:N[+io|+graph]            ("cuda" is cuda:0; GPU paths: ort_cuda.h)

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tessera {

// What numbers an engine computes with. tf32 is a GPU matmul mode: fp32 on a CPU.
enum class Precision { fp32, tf32, fp16, bf16, int8 };

// Every precision, in the order help texts and errors list them.
const std::vector<Precision>& all_precisions();

// "fp32", "tf32", ...: the name the CLI, journals and tables use.
std::string precision_name(Precision precision);

// "fp32, tf32, fp16, bf16 or int8": the valid values, for help texts and errors.
std::string precision_choices();

// Throws UsageError "unknown precision 'x' (expected fp32, tf32, fp16, bf16 or int8)".
Precision parse_precision(std::string_view text);

// "" (the engine's default on the device) is nullopt; anything else as parse_precision.
std::optional<Precision> parse_optional_precision(std::string_view text);

// How an engine on a GPU moves data: the backend's default path, IO binding, or CUDA graphs.
enum class GpuPath { automatic, io, graph };

struct Device {
  int cuda_index = -1;  // -1: the CPU; N: CUDA device N
  GpuPath gpu_path = GpuPath::automatic;

  bool on_cpu() const { return cuda_index < 0; }
  // "cpu", "cuda:0", "cuda:0+io", "cuda:1+graph": the text parse_device reads back.
  std::string name() const;
  // The same device without a GPU path suffix: "cpu" or "cuda:N".
  std::string plain_name() const;
  bool operator==(const Device&) const = default;
};

// "cpu" | "cuda" | "cuda:N" with an optional "+io" / "+graph". Throws UsageError
// "unknown device 'x' (expected cpu or cuda:N[+io|+graph])".
Device parse_device(std::string_view text);

}  // namespace tessera
