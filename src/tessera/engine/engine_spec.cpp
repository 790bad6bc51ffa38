#include "tessera/engine/engine_spec.h"

#include <fmt/format.h>

#include <algorithm>
#include <new>

#include "tessera/common/error.h"
#include "tessera/engine/native/native_backend.h"
#include "tessera/engine/ort/ort_backend.h"
#include "tessera/model/model_info.h"

namespace tessera {
namespace {

template <typename T, typename Name>
std::string join(const std::vector<T>& items, Name name) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ", ") + name(item);
  return out;
}

std::string names_of(const std::vector<Precision>& precisions) {
  return join(precisions, precision_name);
}

// The precision a spec computes at: nullopt is the default; tf32 (a GPU matmul mode) is fp32 on
// a CPU. Returns nullopt when the backend cannot run `precision` on `device`; *why says why.
std::optional<Precision> resolve_precision(const Backend& backend, const Device& device,
                                           std::optional<Precision> precision, std::string* why) {
  const bool cpu = device.on_cpu();
  const std::vector<Precision>& offered = cpu ? backend.cpu_precisions : backend.gpu_precisions;
  if (offered.empty()) {
    *why = fmt::format("the {} engine runs on the {} only", backend.name, cpu ? "cuda" : "cpu");
    return std::nullopt;
  }
  if (!precision) return offered.front();
  if (cpu && *precision == Precision::tf32) return Precision::fp32;
  if (std::find(offered.begin(), offered.end(), *precision) != offered.end()) return *precision;
  *why = fmt::format("the {} engine computes {} on {}, not {}", backend.name, names_of(offered),
                     cpu ? "cpu" : "cuda", precision_name(*precision));
  for (const Backend& other : engine_backends()) {  // one that does, e.g. bf16 on the cpu
    const auto& its = cpu ? other.cpu_precisions : other.gpu_precisions;
    if (&other != &backend && std::find(its.begin(), its.end(), *precision) != its.end()) {
      *why += " (--engine " + other.name + " does)";
      break;
    }
  }
  return std::nullopt;
}

}  // namespace

const std::vector<Backend>& engine_backends() {
  static const std::vector<Backend> backends = {
      {.name = kOrtBackend,
       .cpu_precisions = {Precision::fp32},
       .gpu_precisions = {Precision::tf32, Precision::fp32, Precision::fp16},
       .options = {{.key = "optimization_level",
                    .flag = "--opt-level",
                    .help = "ORT graph optimisation level: 0, 1, 2, 99",
                    .default_value = "99"}},
       .check_option = ort_check_option,
       .check_can_run = ort_check_can_run,
       .make = make_ort_engine,
       .version = ort_version,
       .check_environment = ort_check_environment,
       .speed_rank = 2,
       .check_model = nullptr},
      {.name = kNativeBackend,
       .cpu_precisions = {Precision::fp32, Precision::bf16, Precision::int8},
       .gpu_precisions = {},
       .options = {},
       .check_option = nullptr,
       .check_can_run = native_check_can_run,
       .make = make_native_engine,
       .version = native_backend_version,
       .check_environment = nullptr,
       .speed_rank = 1,  // 1.25-1.44x ORT at fp32 on one core (docs/PERFORMANCE.md)
       .check_model = native_check_model},
  };
  return backends;
}

const Backend& find_backend(const std::string& name) {
  const auto& all = engine_backends();
  const auto it =
      std::find_if(all.begin(), all.end(), [&](const Backend& b) { return b.name == name; });
  if (it == all.end()) {
    throw UsageError(fmt::format("unknown engine '{}' (expected {})", name,
                                 join(all, [](const Backend& b) { return b.name; })));
  }
  return *it;
}

std::string backend_choices() {
  const auto& all = engine_backends();
  std::string out;
  for (size_t i = 0; i < all.size(); ++i)
    out += (i == 0 ? "" : i + 1 == all.size() ? " or " : ", ") + all[i].name;
  return out;
}

namespace {

// "" when every backend runs `p` on CPUs, "(GPU)" when only GPUs do, "(native CPU)" when only
// that backend's CPU engine does.
std::string where_it_runs(Precision p) {
  const auto runs = [p](const std::vector<Precision>& list) {
    return std::find(list.begin(), list.end(), p) != list.end();
  };
  std::vector<std::string> cpu_backends;
  for (const Backend& b : engine_backends())
    if (runs(b.cpu_precisions)) cpu_backends.push_back(b.name);
  if (cpu_backends.size() == engine_backends().size()) return "";
  if (cpu_backends.empty()) return " (GPU)";
  return " (" + join(cpu_backends, [](const std::string& n) { return n; }) + " CPU)";
}

}  // namespace

std::string precision_choices_by_device() {
  return join(all_precisions(), [](Precision p) { return precision_name(p) + where_it_runs(p); });
}

EngineSpec resolve_engine_spec(const std::string& backend, const Device& device,
                               std::optional<Precision> precision) {
  const Backend& row = find_backend(backend);
  EngineSpec spec;
  spec.backend = row.name;
  spec.device = device;
  std::string why;
  const std::optional<Precision> resolved = resolve_precision(row, device, precision, &why);
  if (!resolved) throw UsageError(device.name() + ": " + why);
  spec.precision = *resolved;
  return spec;
}

EngineSpec parse_engine_spec(const std::string& backend, const std::string& device,
                             const std::string& precision) {
  find_backend(backend);
  const std::optional<Precision> parsed = parse_optional_precision(precision);
  return resolve_engine_spec(backend, parse_device(device), parsed);
}

std::string engine_cannot_run(const std::string& backend, const Device& device,
                              std::optional<Precision> precision) {
  std::string why;
  resolve_precision(find_backend(backend), device, precision, &why);
  return why;
}

namespace {

// A float16 model computes in float16 whatever precision the engine is asked for, so a run
// recorded as "fp32" (or bf16, int8, tf32) would not be one: only fp16 (a GPU) takes it.
void refuse_float16_model_unless_fp16(const EngineSpec& spec, const std::string& model_path) {
  if (spec.precision == Precision::fp16) return;
  ModelFileInfo info;
  try {
    info = read_model_info(model_path);
  } catch (const Error&) {
    return;  // the checks below name what is wrong with the file
  }
  if (!info.has_float16) return;
  throw Error(fmt::format(
      "{}: a float16 model (as tessera convert-model writes); {} on {} needs the float32 model",
      model_path, spec.label(), spec.device.name()));
}

}  // namespace

void check_engine_can_run(const EngineSpec& spec, const std::string& model_path) {
  refuse_float16_model_unless_fp16(spec, model_path);
  find_backend(spec.backend).check_can_run(spec, model_path);
}

namespace {

// The backends, fastest first.
std::vector<const Backend*> backends_by_speed() {
  std::vector<const Backend*> out;
  for (const Backend& backend : engine_backends()) out.push_back(&backend);
  std::stable_sort(out.begin(), out.end(), [](const Backend* a, const Backend* b) {
    return a->speed_rank < b->speed_rank;
  });
  return out;
}

// Why `backend` cannot run `precision` on one of `devices` ("on cuda:0 (the native engine runs
// on the cpu only)"), "" when it can run it on all.
std::string devices_refused(const Backend& backend, const std::vector<Device>& devices,
                            std::optional<Precision> precision) {
  for (const Device& device : devices) {
    const std::string why = engine_cannot_run(backend.name, device, precision);
    if (!why.empty()) return fmt::format("on {} ({})", device.name(), why);
  }
  return "";
}

// Why `backend` cannot run the model at `model_path` on `devices` (its checks' Error line, which
// names the file), "" when it can.
std::string model_refused(const Backend& backend, const std::string& model_path,
                          const std::vector<Device>& devices, std::optional<Precision> precision) {
  try {
    for (const Device& device : devices)
      check_engine_can_run(resolve_engine_spec(backend.name, device, precision), model_path);
    if (backend.check_model) backend.check_model(model_path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// "default: fastest fp32 engine here": the reason when the fastest backend is taken.
std::string fastest_reason(const Backend& backend, const std::vector<Device>& devices,
                           std::optional<Precision> precision) {
  const Device device = devices.empty() ? Device{} : devices.front();
  const Precision resolved = resolve_engine_spec(backend.name, device, precision).precision;
  return fmt::format("default: fastest {} engine here", precision_name(resolved));
}

}  // namespace

EngineChoice choose_default_engine(const std::string& model_path,
                                   const std::vector<Device>& devices,
                                   std::optional<Precision> precision) {
  const std::vector<const Backend*> ranked = backends_by_speed();
  std::string passed_over;  // why the fastest backend was not taken ("" while it is)
  const auto choice = [&](const Backend* backend, const std::string& why) {
    return EngineChoice{backend->name,
                        why.empty() ? fastest_reason(*backend, devices, precision) : why};
  };
  // The fastest that runs the precision on every device, and why faster ones do not.
  const Backend* runs_precision = nullptr;
  std::string before_it;
  for (const Backend* backend : ranked) {
    std::string why = devices_refused(*backend, devices, precision);
    if (why.empty()) {
      if (!runs_precision) {
        runs_precision = backend;
        before_it = passed_over;
      }
      why = model_refused(*backend, model_path, devices, precision);
      if (why.empty()) return choice(backend, passed_over);
    }
    if (passed_over.empty()) passed_over = fmt::format("{} cannot run {}", backend->name, why);
  }
  // No backend can run the model: the one whose own checks then fail with their line.
  if (runs_precision) return choice(runs_precision, before_it);
  return {ranked.front()->name, passed_over};
}

std::unique_ptr<Engine> make_engine(const std::string& model_path, const EngineSpec& spec) {
  if (spec.max_batch < 1)
    throw UsageError(fmt::format("batch size must be at least 1 (got {})", spec.max_batch));
  if (spec.threads < 1)
    throw UsageError(fmt::format("thread count must be at least 1 (got {})", spec.threads));
  const Backend& backend = find_backend(spec.backend);
  for (const auto& [key, value] : spec.backend_options)
    check_backend_option(spec.backend, key, value);
  try {
    return backend.make(model_path, spec);
  } catch (const std::bad_alloc&) {
    throw OutOfMemoryError(fmt::format("{}: out of memory building an engine for {} pixels",
                                       spec.device.name(), spec.max_batch));
  }
}

void check_backend_option(const std::string& backend, const std::string& key,
                          const std::string& value) {
  const Backend& row = find_backend(backend);
  if (!backend_takes_option(backend, key))
    throw UsageError(fmt::format("the {} engine has no option '{}'", row.name, key));
  row.check_option(key, value);
}

bool backend_takes_option(const std::string& backend, const std::string& key) {
  const auto& options = find_backend(backend).options;
  return std::any_of(options.begin(), options.end(),
                     [&](const BackendOption& o) { return o.key == key; });
}

std::vector<BackendOption> all_backend_options() {
  std::vector<BackendOption> out;
  for (const Backend& backend : engine_backends())
    out.insert(out.end(), backend.options.begin(), backend.options.end());
  return out;
}

const BackendOption& backend_option(const std::string& key) {
  for (const Backend& backend : engine_backends())
    for (const BackendOption& option : backend.options)
      if (option.key == key) return option;
  throw UsageError(fmt::format("no engine has an option '{}'", key));
}

void check_option_of_any_backend(const std::string& key, const std::string& value) {
  for (const Backend& backend : engine_backends())
    if (backend_takes_option(backend.name, key))
      return check_backend_option(backend.name, key, value);
  throw UsageError(fmt::format("no engine has an option '{}'", key));
}

void check_engine_environment() {
  for (const Backend& backend : engine_backends())
    if (backend.check_environment) backend.check_environment();
}

std::string backend_version(const std::string& backend) {
  return find_backend(backend).version();
}

}  // namespace tessera
