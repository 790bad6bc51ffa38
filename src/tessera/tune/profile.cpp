#include "tessera/tune/profile.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "tessera/common/error.h"
#include "tessera/common/fnv1a.h"
#include "tessera/common/version.h"
#include "tessera/engine/engine_spec.h"
#include "tessera/io/atomic_file.h"
#include "tessera/topology/placement.h"

namespace tessera {
namespace {

// Reads `key` of `object` as T, or throws the profile error naming `where`.
template <typename T>
T field(const nlohmann::json& object, const char* key, const std::string& where,
        const std::string& path) {
  if (!object.is_object() || !object.contains(key))
    throw Error(fmt::format("{}: not a tessera tune profile (missing {}{})", path, where, key));
  try {
    return object.at(key).get<T>();
  } catch (const nlohmann::json::exception&) {
    throw Error(
        fmt::format("{}: not a tessera tune profile (wrong type for {}{})", path, where, key));
  }
}

}  // namespace

std::string fnv1a64_hex(const void* data, std::size_t bytes) {
  return fmt::format("{:016x}",
                     fnv1a_update(kFnv1aOffset, static_cast<const unsigned char*>(data), bytes));
}

std::string machine_fingerprint_hash(const MachineFingerprint& m) {
  const std::string text = fmt::format("{}|{}|{}|{}|{}|{}", m.cpu_model, m.cores, m.pus,
                                       m.numa_nodes, m.packages, m.engine_version);
  return fnv1a64_hex(text.data(), text.size());
}

MachineFingerprint machine_fingerprint(const MachineInfo& machine, const std::string& backend,
                                       const std::string& version) {
  MachineFingerprint m;
  m.cpu_model = machine.cpu_model;
  m.cores = machine.cores;
  m.pus = machine.pus;
  m.numa_nodes = static_cast<int>(machine.numa_nodes.size());
  m.packages = machine.packages;
  m.version_of = backend;
  m.engine_version = version;
  m.fingerprint = machine_fingerprint_hash(m);
  return m;
}

MachineFingerprint this_machine_fingerprint(const std::string& backend) {
  return machine_fingerprint(Topology::this_machine().info(), backend, backend_version(backend));
}

ModelFingerprint model_fingerprint(const std::string& model_path) {
  std::ifstream in(model_path, std::ios::binary);
  std::error_code ec;
  if (!in || !std::filesystem::is_regular_file(model_path, ec))
    throw Error(model_path + ": cannot read the model");
  ModelFingerprint m;
  m.path = model_path;
  uint64_t hash = kFnv1aOffset;
  std::vector<char> buffer(1 << 20);
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    const auto got = static_cast<std::size_t>(in.gcount());
    hash = fnv1a_update(hash, reinterpret_cast<const unsigned char*>(buffer.data()), got);
    m.bytes += static_cast<int64_t>(got);
  }
  if (in.bad()) throw Error(model_path + ": cannot read the model");
  m.hash = fmt::format("fnv1a64:{:016x}", hash);
  return m;
}

nlohmann::json profile_json(const Profile& p) {
  return {{"tool", "tessera tune"},
          {"version", kVersion},
          {"machine",
           {{"cpu_model", p.machine.cpu_model},
            {"cores", p.machine.cores},
            {"pus", p.machine.pus},
            {"numa_nodes", p.machine.numa_nodes},
            {"packages", p.machine.packages},
            {"engine_version", p.machine.engine_version},
            {"fingerprint", p.machine.fingerprint}}},
          {"model", {{"path", p.model.path}, {"bytes", p.model.bytes}, {"hash", p.model.hash}}},
          {"device", p.device},
          {"engine", p.engine},
          {"precision", p.precision},
          {"plan",
           {{"layout", p.plan.layout},
            {"batch", p.plan.batch},
            {"workers", p.plan.workers},
            {"threads", p.plan.threads},
            {"membind", p.plan.membind}}},
          {"search", p.search},
          {"ranking", p.ranking}};
}

Profile profile_from_json(const nlohmann::json& doc, const std::string& path) {
  if (!doc.is_object() || !doc.contains("tool") || !doc["tool"].is_string() ||
      doc["tool"].get<std::string>() != "tessera tune")
    throw Error(path + ": not a tessera tune profile (no \"tool\": \"tessera tune\")");
  Profile p;
  const auto& m = doc.contains("machine") ? doc["machine"] : nlohmann::json();
  p.machine.cpu_model = field<std::string>(m, "cpu_model", "machine.", path);
  p.machine.cores = field<int>(m, "cores", "machine.", path);
  p.machine.pus = field<int>(m, "pus", "machine.", path);
  p.machine.numa_nodes = field<int>(m, "numa_nodes", "machine.", path);
  p.machine.packages = field<int>(m, "packages", "machine.", path);
  if (m.is_object() && m.contains("ort_version") && !m.contains("engine_version")) {
    p.machine.engine_version = field<std::string>(m, "ort_version", "machine.", path);
  } else {
    p.machine.engine_version = field<std::string>(m, "engine_version", "machine.", path);
    p.machine.version_of = "";  // the profile's engine, once read below
  }
  p.machine.fingerprint = field<std::string>(m, "fingerprint", "machine.", path);
  const auto& model = doc.contains("model") ? doc["model"] : nlohmann::json();
  p.model.path = field<std::string>(model, "path", "model.", path);
  p.model.bytes = field<int64_t>(model, "bytes", "model.", path);
  p.model.hash = field<std::string>(model, "hash", "model.", path);
  p.device = field<std::string>(doc, "device", "", path);
  if (doc.contains("engine")) p.engine = field<std::string>(doc, "engine", "", path);
  if (doc.contains("precision")) p.precision = field<std::string>(doc, "precision", "", path);
  if (p.machine.version_of.empty()) p.machine.version_of = p.engine;
  const auto& plan = doc.contains("plan") ? doc["plan"] : nlohmann::json();
  p.plan.layout = field<std::string>(plan, "layout", "plan.", path);
  p.plan.batch = field<int64_t>(plan, "batch", "plan.", path);
  p.plan.workers = field<int>(plan, "workers", "plan.", path);
  p.plan.threads = field<int>(plan, "threads", "plan.", path);
  p.plan.membind = field<std::string>(plan, "membind", "plan.", path);
  if (p.plan.batch < 1)
    throw Error(fmt::format("{}: not a tessera tune profile (plan.batch {} is not positive)", path,
                            p.plan.batch));
  if (!is_layout_name(p.plan.layout))
    throw Error(fmt::format("{}: not a tessera tune profile (plan.layout '{}' is not a layout)",
                            path, p.plan.layout));
  if (p.plan.membind != "local" && p.plan.membind != "interleave")
    throw Error(
        fmt::format("{}: not a tessera tune profile (plan.membind '{}' is not local or interleave)",
                    path, p.plan.membind));
  if (doc.contains("ranking")) p.ranking = doc["ranking"];
  if (doc.contains("search")) p.search = doc["search"];
  return p;
}

void write_profile(const Profile& profile, const std::string& path) {
  AtomicFile file(path);
  const std::string text = profile_json(profile).dump(2) + "\n";
  file.write(text.data(), text.size());
  file.commit();
}

Profile read_profile(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) throw Error(path + ": no such file");
  std::ifstream in(path);
  if (!in || std::filesystem::is_directory(path, ec))
    throw Error(path + ": cannot read the profile");
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(text.str());
  } catch (const nlohmann::json::parse_error& e) {
    throw Error(fmt::format("{}: invalid JSON at byte {}", path, e.byte));
  } catch (const nlohmann::json::exception& e) {  // e.g. a number too large for a double
    throw Error(fmt::format("{}: invalid JSON ({})", path, e.what()));
  }
  return profile_from_json(doc, path);
}

std::string profile_mismatch(const Profile& profile, const std::string& path,
                             const MachineFingerprint& machine, const ModelFingerprint& model,
                             const std::string& device) {
  if (profile.machine.fingerprint != machine.fingerprint) {
    return fmt::format(
        "{}: tuned on another machine ({}, {} cores, {} {}; this one: {}, {} cores, {} {}); not "
        "using it",
        path, profile.machine.cpu_model, profile.machine.cores, profile.machine.version_of,
        profile.machine.engine_version, machine.cpu_model, machine.cores, machine.version_of,
        machine.engine_version);
  }
  if (profile.model.hash != model.hash || profile.model.bytes != model.bytes) {
    return fmt::format("{}: tuned for another model ({}, {}; this one: {}, {}); not using it", path,
                       profile.model.path, profile.model.hash, model.path, model.hash);
  }
  if (profile.device != device) {
    return fmt::format("{}: tuned for device {}, not {}; not using it", path, profile.device,
                       device);
  }
  return "";
}

ProfileUse use_profile(const std::string& profile_path, const std::string& model_path,
                       const std::string& device) {
  const Profile profile = read_profile(profile_path);
  ProfileUse use;
  use.warning =
      profile_mismatch(profile, profile_path, this_machine_fingerprint(profile.machine.version_of),
                       model_fingerprint(model_path), device);
  use.applied = use.warning.empty();
  if (use.applied) {
    use.plan = profile.plan;
    use.engine = profile.engine;
    use.precision = profile.precision;
    use.within_noise = ranking_within_noise(profile.ranking);
  }
  return use;
}

std::string apply_profile(const std::string& path, const std::string& model_path,
                          const std::string& device, const ProfileTargets& targets,
                          ProfileTaken* taken) {
  const ProfileUse use = use_profile(path, model_path, device);
  if (!use.applied) return use.warning;
  ProfileTaken filled;
  filled.within_noise = use.within_noise;
  if (targets.engine) filled.values["engine"] = *targets.engine = use.engine;
  if (targets.precision) filled.values["precision"] = *targets.precision = use.precision;
  if (targets.layout) filled.values["layout"] = *targets.layout = use.plan.layout;
  if (targets.membind) filled.values["membind"] = *targets.membind = use.plan.membind;
  if (targets.batch) filled.values["batch"] = *targets.batch = use.plan.batch;
  if (taken) *taken = filled;
  return "";
}

std::string profile_taken_line(const std::string& path, const ProfileTaken& taken) {
  std::string values;
  for (const char* key : {"engine", "precision", "layout", "membind", "batch"}) {
    const auto value = taken.values.find(key);
    if (value == taken.values.end()) continue;
    values += fmt::format("{}{} {}", values.empty() ? "" : ", ", key,
                          value->is_string() ? value->get<std::string>() : value->dump());
  }
  if (values.empty()) values = "nothing taken (every setting was given)";
  return fmt::format(
      "profile {}: {}{}", path, values,
      taken.within_noise ? "; its best two candidates were within noise (either would do)" : "");
}

bool ranking_within_noise(const nlohmann::json& ranking) {
  if (!ranking.is_array() || ranking.size() < 2) return false;
  const auto spread = [](const nlohmann::json& row, double& low, double& high) {
    if (!row.is_object()) return false;
    const auto min = row.find("min_ms_per_pixel"), max = row.find("max_ms_per_pixel");
    if (min == row.end() || max == row.end() || !min->is_number() || !max->is_number())
      return false;
    low = min->get<double>();
    high = max->get<double>();
    return true;
  };
  double low0 = 0, high0 = 0, low1 = 0, high1 = 0;
  if (!spread(ranking[0], low0, high0) || !spread(ranking[1], low1, high1)) return false;
  return std::max(low0, low1) <= std::min(high0, high1);
}

std::string apply_profile(const std::string& path, BenchOptions& options,
                          const BenchFlagsGiven& given) {
  std::string layout, engine, precision;
  int64_t batch = 0;
  const std::string warning = apply_profile(
      path, options.model_path, options.devices.empty() ? "" : options.devices.front().name(),
      {given.layout ? nullptr : &layout, given.batch ? nullptr : &batch,
       given.membind ? nullptr : &options.membind, given.engine ? nullptr : &engine,
       given.precision ? nullptr : &precision});
  if (!layout.empty()) options.layouts = {layout};
  if (batch > 0) options.batch_sizes = {batch};
  if (!engine.empty()) options.engines = {engine};
  if (!precision.empty()) options.precisions = {parse_precision(precision)};
  return warning;
}

}  // namespace tessera
