#pragma once
// A tuning profile: the plan `tessera tune` chose (layout, batch, threads, memory policy) with
// the fingerprints of the machine and model it was measured on. `bench --profile` and
// `infer --profile` take their defaults from it, but only on the same machine and model: a
// profile from elsewhere is reported in one warning line and not used.
//
// Invariants: MachineFingerprint::fingerprint is machine_fingerprint_hash() of the other
// fields; ModelFingerprint::hash is the FNV-1a 64-bit hash of the file's bytes, 16 hex digits.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "tessera/bench/bench.h"
#include "tessera/topology/topology.h"

namespace tessera {

struct MachineFingerprint {
  std::string cpu_model;
  int cores = 0;
  int pus = 0;
  int numa_nodes = 0;
  int packages = 0;
  std::string ort_version;
  std::string fingerprint;  // 16 hex digits
};

struct ModelFingerprint {
  std::string path;
  int64_t bytes = 0;
  std::string hash;  // "fnv1a64:<16 hex digits>"
};

struct TunedPlan {
  std::string layout;
  int64_t batch = 0;
  int workers = 0;
  int threads = 0;  // intra-op threads per worker
  std::string membind = "local";
};

struct Profile {
  MachineFingerprint machine;
  ModelFingerprint model;
  std::string device = "cpu";
  // What the plan was measured with (engine_spec.h); profiles written before these were
  // recorded read as "ort" and "fp32".
  std::string engine = "ort";
  std::string precision = "fp32";
  TunedPlan plan;
  nlohmann::json ranking = nlohmann::json::array();  // the tune ranking rows, as Table JSON
  nlohmann::json search = nlohmann::json::object();  // rounds, seconds, budget
};

// FNV-1a 64-bit over `bytes`, as 16 lowercase hex digits.
std::string fnv1a64_hex(const void* data, std::size_t bytes);
std::string machine_fingerprint_hash(const MachineFingerprint& machine);

MachineFingerprint machine_fingerprint(const MachineInfo& machine, const std::string& ort_version);
// The running machine with the linked ONNX Runtime.
MachineFingerprint this_machine_fingerprint();
// Reads the whole file; throws Error "<path>: cannot read the model" when it cannot.
ModelFingerprint model_fingerprint(const std::string& model_path);

nlohmann::json profile_json(const Profile& profile);
// Throws Error "<path>: not a tessera tune profile (<what is wrong>)".
Profile profile_from_json(const nlohmann::json& doc, const std::string& path);
// Written atomically (AtomicFile).
void write_profile(const Profile& profile, const std::string& path);
// Throws Error "<path>: no such file" / "<path>: invalid JSON (...)" / as profile_from_json.
Profile read_profile(const std::string& path);

// "" when `profile` was tuned on `machine` for `model` and `device`; otherwise one line saying
// what differs and that the profile is not used.
std::string profile_mismatch(const Profile& profile, const std::string& path,
                             const MachineFingerprint& machine, const ModelFingerprint& model,
                             const std::string& device);

// Where --profile puts its plan: each pointer is a default to fill, or null when the user gave
// that flag (a flag the user gave always wins).
struct ProfileTargets {
  std::string* layout = nullptr;
  int64_t* batch = nullptr;
  std::string* membind = nullptr;
  std::string* engine = nullptr;
  std::string* precision = nullptr;
};
// What --profile gave a command: the values it filled, keyed by what they set ("engine",
// "precision", "layout", "membind", "batch"), and whether the profile's ranking
// was within noise (ranking_within_noise).
struct ProfileTaken {
  nlohmann::json values = nlohmann::json::object();
  bool within_noise = false;
};
// Loads the profile; when it matches this machine, `model_path` and `device` fills the targets,
// records them in `taken` (when given) and returns ""; otherwise fills nothing and returns the
// warning. Bad files throw.
std::string apply_profile(const std::string& path, const std::string& model_path,
                          const std::string& device, const ProfileTargets& targets,
                          ProfileTaken* taken = nullptr);
// One line for stderr: "profile P: engine native, precision bf16, layout core, membind local,
// batch 256", then "; its best two candidates were within noise (either would do)" when they
// were; "profile P: nothing taken (every setting was given)" when every flag was given.
std::string profile_taken_line(const std::string& path, const ProfileTaken& taken);

// The best two rows of a profile's ranking overlap: both have numbers "min_ms_per_pixel" and
// "max_ms_per_pixel", and the two [min, max] ranges meet. False with fewer rows, or rows without
// a spread (profiles written before spreads were recorded).
bool ranking_within_noise(const nlohmann::json& ranking);
// The same for bench: options.layouts (one layout), options.batch_sizes (one batch),
// options.membind, options.engines and options.precisions (one each), each unless given; the
// device checked is options.devices.front().
struct BenchFlagsGiven {
  bool layout = false, batch = false, membind = false, engine = false, precision = false;
};
std::string apply_profile(const std::string& path, BenchOptions& options,
                          const BenchFlagsGiven& given);

// What --profile gives a command: the plan when the profile matches this machine, the model
// and the device; otherwise applied = false and a warning line for stderr.
struct ProfileUse {
  bool applied = false;
  TunedPlan plan;
  std::string engine, precision;
  bool within_noise = false;  // ranking_within_noise of the profile's ranking
  std::string warning;
};
// Bad files throw (as read_profile); mismatches only warn.
ProfileUse use_profile(const std::string& profile_path, const std::string& model_path,
                       const std::string& device);

}  // namespace tessera
