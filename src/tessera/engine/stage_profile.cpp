#include "tessera/engine/stage_profile.h"

#include <array>
#include <cmath>

namespace tessera {
namespace {

struct StageInfo {
  const char* name;
  bool gemm;
  bool in_engine;
};

constexpr std::array<StageInfo, StageProfile::kStages> kStageInfo = {{
    {"primitive_creation", false, true},
    {"input_features", false, true},
    {"gemm_embedding", true, true},
    {"gemm_qkv_out", true, true},
    {"gemm_ffn", true, true},
    {"gemm_gru_input", true, true},
    {"gemm_gru_recurrent", true, true},
    {"gemm_fusion", true, true},
    {"attention_core", true, true},
    {"softmax", false, true},
    {"normalization", false, true},
    {"activation_conversion", false, true},
    {"gru_gates", false, true},
    {"pooling", false, true},
    {"tile_scan", false, false},
    {"input_preparation", false, false},
    {"embedding_quantisation", false, false},
    {"writing", false, false},
}};

constexpr double kMs = 1e-6;  // per nanosecond

}  // namespace

const char* stage_name(Stage stage) {
  return kStageInfo[static_cast<size_t>(stage)].name;
}

bool is_gemm_stage(Stage stage) {
  return kStageInfo[static_cast<size_t>(stage)].gemm;
}

bool is_engine_stage(Stage stage) {
  return kStageInfo[static_cast<size_t>(stage)].in_engine;
}

int64_t engine_stages_ns(const StageProfile& profile) {
  int64_t sum = 0;
  for (size_t i = 0; i < StageProfile::kStages; ++i)
    if (kStageInfo[i].in_engine) sum += profile.ns[i];
  return sum;
}

int64_t profiled_ns(const StageProfile& profile) {
  int64_t outside = 0;
  for (size_t i = 0; i < StageProfile::kStages; ++i)
    if (!kStageInfo[i].in_engine) outside += profile.ns[i];
  return profile.engine_ns + outside;
}

// One row per stage with time, then the engine's unmeasured rest and the total.
Table stage_table(const StageProfile& profile, double peak_gops) {
  std::vector<Column> columns = {{"stage", "stage", -1, false},
                                 {"ms", "ms", 1},
                                 {"share", "share %", 1},
                                 {"gops", "GFLOP/s", 1}};
  if (peak_gops > 0) columns.push_back({"of_peak", "% of peak", 1});
  Table table(columns);
  const double total = static_cast<double>(profiled_ns(profile));
  const auto add = [&](const std::string& name, int64_t ns, nlohmann::json gops) {
    std::vector<nlohmann::json> cells = {name, static_cast<double>(ns) * kMs,
                                         total > 0 ? 100.0 * static_cast<double>(ns) / total : 0.0,
                                         gops};
    if (peak_gops > 0) {
      cells.push_back(gops.is_number() ? nlohmann::json(100.0 * gops.get<double>() / peak_gops)
                                       : nlohmann::json());
    }
    table.add_row(std::move(cells));
  };
  for (size_t i = 0; i < StageProfile::kStages; ++i) {
    if (profile.ns[i] == 0) continue;
    const bool rated = kStageInfo[i].gemm && profile.ns[i] > 0;
    add(kStageInfo[i].name, profile.ns[i],
        rated ? nlohmann::json(profile.operations[i] / static_cast<double>(profile.ns[i]))
              : nlohmann::json());
  }
  add("engine_other", profile.engine_ns - engine_stages_ns(profile), nlohmann::json());
  add("total", profiled_ns(profile), nlohmann::json());
  return table;
}

nlohmann::json stage_json(const StageProfile& profile) {
  nlohmann::json stages = nlohmann::json::object();
  for (size_t i = 0; i < StageProfile::kStages; ++i) {
    nlohmann::json stage = {{"ms", static_cast<double>(profile.ns[i]) * kMs}};
    if (kStageInfo[i].gemm) {
      stage["gop"] = profile.operations[i] * 1e-9;
      stage["gops"] =
          profile.ns[i] > 0
              ? nlohmann::json(profile.operations[i] / static_cast<double>(profile.ns[i]))
              : nlohmann::json();
    }
    stages[kStageInfo[i].name] = stage;
  }
  stages["engine_ms"] = static_cast<double>(profile.engine_ns) * kMs;
  stages["engine_other_ms"] =
      static_cast<double>(profile.engine_ns - engine_stages_ns(profile)) * kMs;
  stages["engine_runs"] = profile.runs;
  stages["run_shapes"] = profile.shapes;
  return stages;
}

StageProfile stage_profile_from_json(const nlohmann::json& stages) {
  StageProfile profile;
  const auto ns_of = [](double ms) { return static_cast<int64_t>(std::llround(ms / kMs)); };
  for (size_t i = 0; i < StageProfile::kStages; ++i) {
    const nlohmann::json& stage = stages.at(kStageInfo[i].name);
    profile.ns[i] = ns_of(stage.at("ms").get<double>());
    if (kStageInfo[i].gemm) profile.operations[i] = stage.at("gop").get<double>() * 1e9;
  }
  profile.engine_ns = ns_of(stages.at("engine_ms").get<double>());
  profile.runs = stages.at("engine_runs").get<int64_t>();
  profile.shapes = stages.at("run_shapes").get<int64_t>();
  return profile;
}

}  // namespace tessera
