// tessera import: turns an upstream Tessera PyTorch checkpoint into a tessera ONNX model.
// tools/read_checkpoint.py (run with a Python that has PyTorch) dumps the checkpoint's tensors
// to a temporary directory of .npy files and an index; checkpoint_import.h checks every key
// and shape and writes the model with the builder. Nothing is written on any error.
//
// The reader is found, in order, at $TESSERA_CHECKPOINT_READER, next to an installed binary
// (<bin>/../share/tessera/read_checkpoint.py), then in the source tree the binary was built
// from (<source>/tools/read_checkpoint.py). The Python is --python, else $TESSERA_PYTHON, else
// /usr/bin/python3 when it exists, else python3 on PATH.

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

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
#include "tessera/common/error.h"
#include "tessera/io/npy.h"
#include "tessera/model/checkpoint_import.h"

extern char** environ;

namespace tessera::cli {
namespace {

namespace fs = std::filesystem;

struct ImportOptions {
  std::string checkpoint, output, stats, python;
  int heads = 0;
  bool force = false;
  bool trust_pickle = false;
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

// Runs the reader; on failure throws its last line of stderr.
void run_reader(const ImportOptions& o, const std::string& dir) {
  const std::string python = find_python(o.python);
  std::vector<std::string> args = {python, find_reader(), o.checkpoint, dir};
  for (const auto& prefix : dropped_key_prefixes()) {
    args.push_back("--skip-prefix");
    args.push_back(prefix);
  }
  if (o.trust_pickle) args.push_back("--trust-pickle");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const std::string log = dir + "/reader.log";
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, log.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0600);
  pid_t pid = 0;
  const int err = ::posix_spawnp(&pid, python.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (err != 0)
    throw Error("cannot run " + python + ": " + std::strerror(err) +
                " (tessera import reads checkpoints with Python + PyTorch; --python PATH)");
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return;
  std::ifstream in(log);
  std::string line, last;
  while (std::getline(in, line)) {
    if (!line.empty()) last = line;
  }
  if (last.empty())
    last = "the checkpoint reader " + python + " failed (status " +
           std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : -1) + ")";
  throw Error(last);
}

Checkpoint read_dump(const std::string& checkpoint, const std::string& dir) {
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
  for (const auto& entry : index["tensors"]) {
    const NpyArray array(dir + "/" + entry["file"].get<std::string>());
    CheckpointTensor& t = c.tensors[entry["key"].get<std::string>()];
    t.shape = array.shape();
    t.values.resize(static_cast<size_t>(array.size()));
    if (array.size() > 0) array.read_as_float(0, array.size(), t.values.data());
  }
  return c;
}

void run_import(const ImportOptions& o) {
  std::error_code ec;
  if (!fs::is_regular_file(o.checkpoint, ec)) throw Error(o.checkpoint + ": no such file");
  check_new_output(o.output, o.force, {o.checkpoint});
  const TempDir dir;
  run_reader(o, dir.path());
  const Checkpoint checkpoint = read_dump(o.checkpoint, dir.path());
  const ModelStats stats = import_checkpoint(checkpoint, o.stats, o.heads, o.output);
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
                  "v1.x: attention heads when not the release's (v1.0 early 8, v1.0/v1.1 4)");
  cmd->add_option("--python", o->python, "Python with PyTorch (default: /usr/bin/python3)");
  cmd->add_flag("--trust-pickle", o->trust_pickle,
                "Unpickle everything in the file (runs code it names; only for trusted files)");
  cmd->add_flag("--force", o->force, "Overwrite an existing output file");
  cmd->callback([o]() { run_import(*o); });
}

}  // namespace tessera::cli
