// tessera import: turns an upstream Tessera PyTorch checkpoint into a tessera ONNX model.
// tools/read_checkpoint.py (Python with numpy; PyTorch only for --trust-pickle) reads the
// checkpoint in two phases over runtime/child_process's control channel: first an index of
// every key's shape and dtype, which checkpoint_import.h checks against the expected layout,
// then, only when every key and shape is right, the values as float32 .npy files in a private
// temporary directory. The builder then writes the model.
//
// Invariants: nothing is written on any error; SIGINT and SIGTERM during an import kill the
// reader, remove the temporary directory and any staged output, and exit 130 / 143.
//
// The reader is found, in order, at $TESSERA_CHECKPOINT_READER, next to an installed binary
// (<bin>/../share/tessera/read_checkpoint.py), then in the source tree the binary was built
// from (<source>/tools/read_checkpoint.py). The Python is --python, else $TESSERA_PYTHON, else
// /usr/bin/python3 when it exists, else python3 on PATH.

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tessera/cli/commands.h"
#include "tessera/cli/output_checks.h"
#include "tessera/cli/validators.h"
#include "tessera/common/error.h"
#include "tessera/io/npy.h"
#include "tessera/model/checkpoint_import.h"
#include "tessera/runtime/child_process.h"

namespace tessera::cli {
namespace {

namespace fs = std::filesystem;

constexpr long kMaxHeads = 4096;  // more than any d_model tessera builds

struct ImportOptions {
  std::string checkpoint, output, stats, python;
  int heads = 0;  // 0: not given (the release's head count)
  bool force = false;
  bool trust_pickle = false;
};

// ---- interruption: SIGINT/SIGTERM set g_signal and kill the reader; the import then unwinds.

std::atomic<int> g_signal{0};
std::atomic<pid_t> g_reader{-1};

extern "C" void on_interrupt(int signal) {
  g_signal.store(signal);
  const pid_t reader = g_reader.load();
  if (reader > 0) ::kill(reader, SIGKILL);
}

struct Interrupted {
  int signal;
};

void throw_if_interrupted() {
  if (const int signal = g_signal.load(); signal != 0) throw Interrupted{signal};
}

// Installs on_interrupt for SIGINT and SIGTERM (no SA_RESTART) and restores the previous
// handlers on destruction.
class InterruptHandlers {
 public:
  InterruptHandlers() {
    struct sigaction action {};
    action.sa_handler = on_interrupt;
    sigemptyset(&action.sa_mask);
    ::sigaction(SIGINT, &action, &previous_int_);
    ::sigaction(SIGTERM, &action, &previous_term_);
  }
  ~InterruptHandlers() {
    ::sigaction(SIGINT, &previous_int_, nullptr);
    ::sigaction(SIGTERM, &previous_term_, nullptr);
  }
  InterruptHandlers(const InterruptHandlers&) = delete;
  InterruptHandlers& operator=(const InterruptHandlers&) = delete;

 private:
  struct sigaction previous_int_ {};
  struct sigaction previous_term_ {};
};

std::string env(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr ? value : "";
}

std::string find_reader() {
  if (const std::string path = env("TESSERA_CHECKPOINT_READER"); !path.empty()) return path;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  const fs::path installed = exe.parent_path() / ".." / "share" / "tessera" / "read_checkpoint.py";
  if (!ec && fs::exists(installed, ec)) return installed.lexically_normal().string();
  const fs::path source = fs::path(TESSERA_SOURCE_DIR) / "tools" / "read_checkpoint.py";
  if (fs::exists(source, ec)) return source.string();
  throw Error("cannot find read_checkpoint.py (looked at " + installed.string() + " and " +
              source.string() + "; set TESSERA_CHECKPOINT_READER)");
}

std::string find_python(const std::string& option) {
  if (!option.empty()) return option;
  if (const std::string path = env("TESSERA_PYTHON"); !path.empty()) return path;
  std::error_code ec;
  return fs::exists("/usr/bin/python3", ec) ? "/usr/bin/python3" : "python3";
}

// A private temporary directory, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    const std::string base = env("TMPDIR").empty() ? "/tmp" : env("TMPDIR");
    std::string pattern = base + "/tessera-import-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr)
      throw Error("cannot create a temporary directory in " + base + ": " + std::strerror(errno));
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// The running reader: phase 1 ("index") on start, phase 2 ("dump" -> "done") on request.
// Its stderr goes to <dir>/reader.log; a failure throws the log's last line. While it runs,
// on_interrupt may kill it.
class ReaderProcess {
 public:
  ReaderProcess(const ImportOptions& o, const std::string& dir)
      : python_(find_python(o.python)), log_(dir + "/reader.log") {
    std::vector<std::string> args = {python_, find_reader(), o.checkpoint, dir};
    for (const auto& prefix : dropped_key_prefixes()) {
      args.push_back("--skip-prefix");
      args.push_back(prefix);
    }
    if (o.trust_pickle) args.push_back("--trust-pickle");
    try {
      child_ = std::make_unique<ChildProcess>(args, log_);
    } catch (const Error& e) {
      throw Error(std::string(e.what()) + " (tessera import reads checkpoints with Python and " +
                  "numpy; --python PATH)");
    }
    g_reader.store(child_->pid());
    throw_if_interrupted();  // a signal before g_reader was set did not kill the reader
    expect("index");
  }
  ~ReaderProcess() { g_reader.store(-1); }  // before ~ChildProcess reaps (and frees) the pid
  ReaderProcess(const ReaderProcess&) = delete;
  ReaderProcess& operator=(const ReaderProcess&) = delete;

  void dump() {
    child_->send_line("dump");
    expect("done");
    g_reader.store(-1);
    child_->wait();
  }

 private:
  void expect(const std::string& word) {
    const std::optional<std::string> line = child_->read_line();
    throw_if_interrupted();
    if (line == word) return;
    g_reader.store(-1);
    const int status = child_->wait();
    std::ifstream in(log_);
    std::string text, last;
    while (std::getline(in, text)) {
      if (!text.empty()) last = text;
    }
    if (last.empty())
      last = "the checkpoint reader " + python_ + " failed (status " + std::to_string(status) + ")";
    throw Error(last);
  }

  std::string python_, log_;
  std::unique_ptr<ChildProcess> child_;
};

std::vector<int64_t> shape_of(const nlohmann::json& entry) {
  return entry.at("shape").get<std::vector<int64_t>>();
}

// The index of phase 1: layout, args, and each tensor's shape (no values yet).
Checkpoint read_index(const std::string& checkpoint, const std::string& dir) {
  std::ifstream in(dir + "/index.json");
  const nlohmann::json index = nlohmann::json::parse(in, nullptr, false);
  if (index.is_discarded()) throw Error(checkpoint + ": the reader left no readable index");
  Checkpoint c;
  c.path = checkpoint;
  c.layout = index.value("layout", "unknown");
  if (c.layout == "unknown") {
    std::string keys;
    for (const auto& key : index["top_level"])
      keys += (keys.empty() ? "" : ", ") + key.get<std::string>();
    throw Error(checkpoint +
                ": unknown checkpoint layout (top-level keys: " + (keys.empty() ? "none" : keys) +
                "; expected model_state, model_state_dict, or model with args)");
  }
  for (const auto& [name, value] : index["args"].items()) c.args[name] = value.get<std::string>();
  for (const auto& entry : index["tensors"])
    c.tensors[entry.at("key").get<std::string>()].shape = shape_of(entry);
  return c;
}

// Phase 2's values into `c`, each .npy's shape checked against the index's.
void read_values(Checkpoint& c, const std::string& dir) {
  std::ifstream in(dir + "/index.json");
  const nlohmann::json index = nlohmann::json::parse(in);
  for (const auto& entry : index["tensors"]) {
    const std::string key = entry.at("key").get<std::string>();
    const NpyArray array(dir + "/" + entry.at("file").get<std::string>());
    CheckpointTensor& t = c.tensors.at(key);
    if (array.shape() != t.shape) throw Error(c.path + ": the reader dumped " + key + " misshaped");
    t.values.resize(static_cast<size_t>(array.size()));
    if (array.size() > 0) array.read_as_float(0, array.size(), t.values.data());
    throw_if_interrupted();
  }
}

// The checkpoint, its keys and shapes checked (detect_architecture) before any value is read.
Checkpoint read_checkpoint(const ImportOptions& o) {
  const TempDir dir;
  ReaderProcess reader(o, dir.path());
  Checkpoint checkpoint = read_index(o.checkpoint, dir.path());
  detect_architecture(checkpoint, o.stats, o.heads);
  throw_if_interrupted();
  reader.dump();
  read_values(checkpoint, dir.path());
  return checkpoint;
}

// Writes the model to a staging file beside the output, renamed into place only when no
// signal came; the staging file is removed otherwise.
ModelStats write_output(const ImportOptions& o, const Checkpoint& checkpoint) {
  const std::string staging = o.output + ".import." + std::to_string(::getpid());
  struct Remove {
    const std::string& path;
    ~Remove() { std::remove(path.c_str()); }
  } remove_staging{staging};
  const ModelStats stats = import_checkpoint(checkpoint, o.stats, o.heads, staging);
  sigset_t signals, previous;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  ::pthread_sigmask(SIG_BLOCK, &signals, &previous);
  const bool interrupted = g_signal.load() != 0;
  const bool renamed = !interrupted && std::rename(staging.c_str(), o.output.c_str()) == 0;
  const int rename_errno = errno;
  ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);  // a pending signal arrives here
  throw_if_interrupted();
  if (!renamed) throw Error("cannot write model " + o.output + ": " + std::strerror(rename_errno));
  return stats;
}

void run_import(const ImportOptions& o) {
  std::error_code ec;
  if (!fs::is_regular_file(o.checkpoint, ec)) throw Error(o.checkpoint + ": no such file");
  check_new_output(o.output, o.force, {o.checkpoint});
  const InterruptHandlers handlers;
  const Checkpoint checkpoint = read_checkpoint(o);
  const ModelStats stats = write_output(o, checkpoint);
  std::printf("wrote %s from %s: %s\n", o.output.c_str(), o.checkpoint.c_str(),
              format_model_stats(stats).c_str());
}

}  // namespace

void add_import_command(CLI::App& root) {
  auto o = std::make_shared<ImportOptions>();
  CLI::App* cmd = root.add_subcommand(
      "import",
      "Turn an upstream Tessera PyTorch checkpoint (v1.0 early, v1.0, v1.1, v2) into "
      "an ONNX model");
  cmd->add_option("checkpoint", o->checkpoint, "The .pt checkpoint")->required();
  cmd->add_option("-o,--output", o->output, "Output .onnx path")->required();
  cmd->add_option("--stats", o->stats, "v1.1: the statistics set it was trained with, mpc or aws");
  cmd->add_option("--heads", o->heads,
                  "v1.x: attention heads when not the release's (v1.0 early 8, v1.0/v1.1 4)")
      ->check(whole_number_in(1, kMaxHeads));
  cmd->add_option("--python", o->python,
                  "Python with numpy that runs the reader (default: /usr/bin/python3); it needs "
                  "PyTorch only for --trust-pickle");
  cmd->add_flag("--trust-pickle", o->trust_pickle,
                "Load the file with PyTorch's full unpickling (runs code it names; only for "
                "trusted files). Without it, a built-in reader takes tensors and plain "
                "containers only, and no PyTorch is needed");
  cmd->add_flag("--force", o->force, "Overwrite an existing output file");
  cmd->callback([o]() {
    try {
      run_import(*o);
    } catch (const Interrupted& interrupted) {  // the reader and temporary files are gone
      std::fprintf(stderr, "tessera: import interrupted by %s; nothing written\n",
                   interrupted.signal == SIGINT ? "SIGINT" : "SIGTERM");
      std::exit(128 + interrupted.signal);
    }
  });
}

}  // namespace tessera::cli
