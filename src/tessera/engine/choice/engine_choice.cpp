#include "tessera/engine/choice/engine_choice.h"

#include <algorithm>
#include <utility>

#include "tessera/common/error.h"

namespace tessera {
namespace {

// The one table of precision names; all_precisions() and the parser read it.
constexpr std::pair<Precision, std::string_view> kPrecisionNames[] = {
    {Precision::fp32, "fp32"}, {Precision::tf32, "tf32"}, {Precision::fp16, "fp16"},
    {Precision::bf16, "bf16"}, {Precision::int8, "int8"},
};

}  // namespace

const std::vector<Precision>& all_precisions() {
  static const std::vector<Precision> all = [] {
    std::vector<Precision> out;
    for (const auto& [precision, name] : kPrecisionNames) out.push_back(precision);
    return out;
  }();
  return all;
}

std::string precision_name(Precision precision) {
  for (const auto& [p, name] : kPrecisionNames)
    if (p == precision) return std::string(name);
  return "unknown";
}

std::string precision_choices() {
  std::string out;
  const size_t n = std::size(kPrecisionNames);
  for (size_t i = 0; i < n; ++i) {
    if (i > 0) out += i + 1 == n ? " or " : ", ";
    out += kPrecisionNames[i].second;
  }
  return out;
}

Precision parse_precision(std::string_view text) {
  for (const auto& [precision, name] : kPrecisionNames)
    if (name == text) return precision;
  throw UsageError("unknown precision '" + std::string(text) + "' (expected " +
                   precision_choices() + ")");
}

std::optional<Precision> parse_optional_precision(std::string_view text) {
  if (text.empty()) return std::nullopt;
  return parse_precision(text);
}

std::string Device::plain_name() const {
  return on_cpu() ? "cpu" : "cuda:" + std::to_string(cuda_index);
}

std::string Device::name() const {
  switch (gpu_path) {
    case GpuPath::io:
      return plain_name() + "+io";
    case GpuPath::graph:
      return plain_name() + "+graph";
    case GpuPath::automatic:
      break;
  }
  return plain_name();
}

Device parse_device(std::string_view text) {
  const auto unknown = [&] {
    return UsageError("unknown device '" + std::string(text) +
                      "' (expected cpu or cuda:N[+io|+graph])");
  };
  if (text == "cpu") return {};
  Device device;
  std::string_view id = text;
  for (const auto& [suffix, path] : {std::pair{"+io", GpuPath::io}, {"+graph", GpuPath::graph}}) {
    const std::string_view s = suffix;
    if (id.size() > s.size() && id.ends_with(s)) {
      id.remove_suffix(s.size());
      device.gpu_path = path;
    }
  }
  if (id == "cuda") id = "cuda:0";
  if (!id.starts_with("cuda:")) throw unknown();
  const std::string_view n = id.substr(5);
  const bool digits = !n.empty() && n.size() < 4 &&
                      std::all_of(n.begin(), n.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (!digits) throw unknown();
  device.cuda_index = std::stoi(std::string(n));
  return device;
}

}  // namespace tessera
