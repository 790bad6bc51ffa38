// `tessera bench` and `tessera make-model` as a user runs them: tables, JSON, and the one-line
// errors for bad models and bad flags.

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "run_cli.h"
#include "test_support.h"

namespace {

using tessera::testing::run_cli;

// ctest runs each case as its own process, in parallel: a directory per process.
const tessera::testing::ProcessTestDir kTestDir("bench_cli");
const std::string& kDir = kTestDir.path();

const std::string& small_model() {
  static const std::string path = [] {
    std::filesystem::create_directories(kDir);
    const std::string p = kDir + "/small.onnx";
    const auto r = run_cli("make-model --force -o " + p +
                           " --d-model 32 --layers 1 --heads 2 --ffn 64 --s2-steps 8 --s1-steps 6");
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return p;
  }();
  return path;
}

int count_lines(const std::string& text) {
  return static_cast<int>(std::count(text.begin(), text.end(), '\n'));
}

TEST(RunModelCli, NeverOverwritesItsInputsAndOtherFilesOnlyWithForce) {
  const std::string dir = kDir + "/run_model";
  std::filesystem::create_directories(dir);
  auto r = run_cli("make-model --force -o " + dir +
                   "/m.onnx --d-model 32 --layers 1 --heads 2 "
                   "--ffn 64 --s2-steps 2 --s1-steps 2");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // [1, 2, 11] and [1, 2, 3] float32 inputs, written as .npy by hand.
  const auto write_input = [&](const std::string& name, int features) {
    const std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, " +
                               std::to_string(features) + "), }";
    std::string padded = header + std::string(128 - 10 - header.size() - 1, ' ') + "\n";
    std::ofstream out(dir + "/" + name, std::ios::binary);
    out << "\x93NUMPY" << '\x01' << '\x00' << static_cast<char>(padded.size()) << '\x00' << padded
        << std::string(4 * 2 * features, '\0');
  };
  write_input("s2.npy", 11);
  write_input("s1.npy", 3);
  const std::string run =
      "run-model -m " + dir + "/m.onnx --s2 " + dir + "/s2.npy --s1 " + dir + "/s1.npy -o ";
  r = run_cli(run + dir + "/out.npy");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_cli(run + dir + "/out.npy");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "tessera: " + dir + "/out.npy: already exists (use --force to overwrite)\n");
  EXPECT_EQ(run_cli(run + dir + "/out.npy --force").exit_code, 0);
  for (const std::string input : {"/m.onnx", "/s2.npy"}) {
    r = run_cli(run + dir + input + " --force");
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_EQ(r.err, "tessera: " + dir + input + ": is also an input of this command\n");
  }
  EXPECT_EQ(run_cli(run + dir + "/out2.npy").exit_code, 0) << "an input was damaged";
}

TEST(BenchCli, MarkdownTableHasOneRowPerCase) {
  const auto r = run_cli("bench -m " + small_model() + " -t 1,2 -b 4,8 --batches 2 -r 1");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("| device | layout"), std::string::npos) << r.out;
  for (const char* row : {"| cpu    | single:1 |", "| cpu    | single:2 |"}) {
    EXPECT_NE(r.out.find(row), std::string::npos) << row << "\n" << r.out;
  }
  // header + separator + 4 rows + blank line + footer
  EXPECT_EQ(count_lines(r.out), 8) << r.out;
  EXPECT_NE(r.out.find("ONNX Runtime 1."), std::string::npos);
}

// Piped, progress is one timestamped line per finished case on stderr, and stdout holds the
// table alone; -q silences stderr.
TEST(BenchCli, ProgressGoesToStderrOneLinePerCaseAndQuietSilencesIt) {
  const std::string args = "bench -m " + small_model() + " -t 1 -b 4,8 --batches 1 -r 1";
  auto r = run_cli(args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string line(
      "[0-9]{4}-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]Z tessera bench: "
      "\\[([12])/2\\] cpu ort "
      "fp32 single:1 b=(4|8): [0-9.]+ ms/px, [0-9.]+ s");
  std::istringstream err(r.err);
  int lines = 0;
  for (std::string text; std::getline(err, text); ++lines)
    EXPECT_TRUE(tessera::testing::matches_whole(text, line)) << text;
  EXPECT_EQ(lines, 2) << r.err;
  // stdout: header, separator, 2 rows, a blank line and the footer; every table line a row.
  EXPECT_EQ(count_lines(r.out), 6) << r.out;
  EXPECT_EQ(r.out.rfind("| device | layout", 0), 0u) << r.out;
  EXPECT_EQ(r.out.find("tessera bench:"), std::string::npos) << r.out;

  r = run_cli(args + " --quiet");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(count_lines(r.out), 6) << r.out;
}

// A model with symbolic step axes runs at the steps asked for, on both engines and in child
// processes too; the JSON records them. Steps a model cannot take are one-line errors.
TEST(BenchCli, StepsOfASymbolicModel) {
  const std::string model = tessera::testing::make_tiny_v2_model(kDir);
  ASSERT_FALSE(::testing::Test::HasFailure());
  auto r = run_cli("bench -m " + model +
                   " --steps 68/9 -t 1 -b 3 --batches 1 -r 1 --engine ort,native --format json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto doc = nlohmann::json::parse(r.out);
  EXPECT_EQ(doc["model"]["s2_steps"], 68);
  EXPECT_EQ(doc["model"]["s1_steps"], 9);
  ASSERT_EQ(doc["rows"].size(), 2u);
  for (const auto& row : doc["rows"]) EXPECT_EQ(row["status"], "ok") << row.dump();
  r = run_cli("bench -m " + model + " --steps 13 -t 1 -b 3 --batches 1 -r 1 --spawn process");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("13 + 13 steps"), std::string::npos) << r.out;

  r = run_cli("bench -m " + small_model() + " --steps 68 -b 2");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "tessera: --steps: " + small_model() +
                       " takes 8 + 6 fixed steps; other step counts need a model with symbolic "
                       "step axes (v1.0 early, v1.1, v2)\n");
  r = run_cli("bench -m " + model + " --steps 257 -b 2");
  EXPECT_EQ(r.err, "tessera: --steps: need 1..256 per branch, got '257'\n");
  r = run_cli("bench -m " + model + " --steps 8/x -b 2");
  EXPECT_EQ(r.err, "tessera: --steps: need N or S2/S1 (e.g. 68 or 68/60), got '8/x'\n");
}

// Zero steps are no step count: refused naming the value, never the default of 40 instead.
TEST(BenchCli, ZeroStepsAreAUsageError) {
  for (const std::string steps : {"0", "8/0", "0/0"}) {
    const auto r = run_cli("bench -m " + small_model() + " --steps " + steps + " -b 2");
    EXPECT_EQ(r.exit_code, 2) << steps;
    EXPECT_EQ(r.err, "tessera: --steps: need 1..256 per branch, got '" + steps + "'\n");
    EXPECT_EQ(r.out, "");
  }
}

TEST(BenchCli, JsonParsesAndCarriesMachineAndRows) {
  const auto r = run_cli("bench -m " + small_model() +
                         " -t 1 -b 4,8 --batches 3 -r 2 --format json --baseline 2");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto doc = nlohmann::json::parse(r.out);
  EXPECT_EQ(doc["tool"], "tessera bench");
  EXPECT_FALSE(doc["machine"]["cpu_model"].get<std::string>().empty());
  EXPECT_GE(doc["machine"]["cores"].get<int>(), 1);
  EXPECT_EQ(doc["model"]["parameters"].get<int64_t>() > 0, true);
  ASSERT_EQ(doc["rows"].size(), 2u);
  const auto& first = doc["rows"][0];
  const auto& second = doc["rows"][1];
  EXPECT_EQ(first["batch"], 4);
  EXPECT_EQ(second["batch"], 8);
  EXPECT_EQ(first["samples_ms"].size(), 6u);  // 3 batches x 2 reps x 1 worker
  EXPECT_EQ(first["pixels"], 12);
  EXPECT_DOUBLE_EQ(second["speedup"].get<double>(), 1.0);  // the baseline row
  EXPECT_NEAR(first["speedup"].get<double>(),
              second["ms_per_pixel"].get<double>() / first["ms_per_pixel"].get<double>(), 1e-9);
  EXPECT_NEAR(first["pixels_per_s"].get<double>(), 1e3 / first["ms_per_pixel"].get<double>(), 1e-6);
  EXPECT_EQ(first["status"], "ok");
}

TEST(BenchCli, CsvHasAHeaderAndOneLinePerRow) {
  const auto r = run_cli("bench -m " + small_model() + " -t 1 -b 4 --batches 1 -r 1 --format csv");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("device,layout,workers,threads,batch,", 0), 0u) << r.out;
  EXPECT_EQ(count_lines(r.out), 2);
}

TEST(BenchCli, OutputIsAPathAndFormatTheFormat) {
  const std::string dir = kDir + "/output";
  std::filesystem::create_directories(dir);
  const std::string args = "bench -m " + small_model() + " -t 1 -b 4 --batches 1 -r 1 -q ";
  // -o is a file; its extension picks the format unless --format says otherwise.
  auto r = run_cli(args + "-o " + dir + "/run.json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "");
  std::ifstream json(dir + "/run.json");
  EXPECT_EQ(nlohmann::json::parse(json)["rows"].size(), 1u);
  r = run_cli(args + "-o " + dir + "/run.txt --format csv");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::ifstream csv(dir + "/run.txt");
  std::string header;
  std::getline(csv, header);
  EXPECT_EQ(header.rfind("device,layout,workers,threads,batch,", 0), 0u) << header;
  // Never the model it reads.
  r = run_cli(args + "-o " + small_model());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "tessera: " + small_model() + ": is also an input of this command\n");
}

TEST(BenchCli, OutputAsAFormatIsDeprecatedButStillWorks) {
  const std::string args = "bench -m " + small_model() + " -t 1 -b 4 --batches 1 -r 1 -q ";
  auto r = run_cli(args + "-o csv");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "tessera bench: '-o csv' is deprecated, use '--format csv'\n");
  EXPECT_EQ(r.out.rfind("device,layout,workers,threads,batch,", 0), 0u) << r.out;
  EXPECT_EQ(count_lines(r.out), 2);
  r = run_cli(args + "--output json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "tessera bench: '-o json' is deprecated, use '--format json'\n");
  EXPECT_EQ(nlohmann::json::parse(r.out)["rows"].size(), 1u);
  // Both ways at once is a usage error, before any work.
  r = run_cli(args + "-o json --format md");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err,
            "tessera: bench: '-o json' (a format, deprecated) and '--format md' given together; "
            "use --format only\n");
}

TEST(BenchCli, LayoutsRunEveryWorkerAtOnceInThreadsOrProcesses) {
  for (const std::string spawn : {"thread", "process"}) {
    const auto r =
        run_cli("bench -m " + small_model() +
                " --layout single:2,2x1 -b 4 --batches 3 -r 2 --format json --spawn " + spawn);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto doc = nlohmann::json::parse(r.out);
    ASSERT_EQ(doc["rows"].size(), 2u);
    const auto& single = doc["rows"][0];
    const auto& pair = doc["rows"][1];
    EXPECT_EQ(single["spawn"], spawn);
    EXPECT_EQ(single["workers"], 1);
    EXPECT_EQ(single["threads"], 2);
    EXPECT_EQ(pair["workers"], 2);
    EXPECT_EQ(pair["threads"], 1);
    EXPECT_EQ(pair["pixels"], 2 * 4 * 3);
    EXPECT_EQ(pair["samples_ms"].size(), 2u * 3 * 2);  // workers x batches x reps
    // Aggregate: the wall time of a repetition over the pixels of all workers.
    EXPECT_NEAR(pair["ms_per_pixel"].get<double>(),
                1e3 * pair["total_s"].get<double>() / (2 * 4 * 3), 1e-9);
  }
}

TEST(BenchCli, UnpinnedRowsSaySo) {
  const auto json = run_cli("bench -m " + small_model() +
                            " --layout 2x1 -b 4 --batches 1 -r 1 --no-pin --format json");
  ASSERT_EQ(json.exit_code, 0) << json.err;
  EXPECT_EQ(nlohmann::json::parse(json.out)["rows"][0]["pinned"], false);
  const auto md = run_cli("bench -m " + small_model() +
                          " --layout 2x1 -b 4 --batches 1 -r 1 --no-pin --spawn process");
  ASSERT_EQ(md.exit_code, 0) << md.err;
  EXPECT_NE(md.out.find("| 2x1 (processes) (unpinned) |"), std::string::npos) << md.out;
}

TEST(BenchCli, AWorkerProcessErrorIsOneLine) {
  std::filesystem::create_directories(kDir);
  const std::string path = kDir + "/corrupt_for_processes.onnx";
  std::ofstream(path) << "garbage";
  const auto r =
      run_cli("bench -m " + path + " --layout 2x1 -b 4 --batches 1 -r 1 --spawn process");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err.rfind("tessera: " + path + ": not a loadable ONNX model (ONNX Runtime: ", 0), 0u)
      << r.err;
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
}

TEST(BenchCli, UnknownSpawnMode) {
  const auto r = run_cli("bench -m " + small_model() + " --spawn fork");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "tessera: unknown --spawn 'fork' (expected thread or process)\n");
}

TEST(BenchCli, MalformedCommandLinesAreUsageErrors) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"bench --bogus",
       "tessera: The following argument was not expected: --bogus (see tessera bench --help)\n"},
      {"infer", "tessera: --output is required (see tessera infer --help)\n"},
      {"", "tessera: A subcommand is required (see tessera --help)\n"},
      {"bench -b x", "tessera: Could not convert: --batch = x (see tessera bench --help)\n"},
      {"bogus", "tessera: unknown command 'bogus' (see tessera --help)\n"},
      // A near miss is named; an option other tools spell otherwise is translated.
      {"infr", "tessera: unknown command 'infr' (did you mean 'infer'? see tessera --help)\n"},
      {"infer -o x --bach 4",
       "tessera: The following argument was not expected: --bach; did you mean --batch? (see "
       "tessera infer --help)\n"},
      {"infer -o x --threads 4",
       "tessera: The following argument was not expected: --threads; tessera says --layout "
       "single:T (one worker of T threads) or --layout JxT (see tessera infer --help)\n"},
      // Values out of range are refused, not wrapped, clamped or dropped.
      {"synth -o x --seed -1",
       "tessera: --seed: need a whole number from 0 to 18446744073709551615, got '-1' (see "
       "tessera synth --help)\n"},
      {"make-model --seed 18446744073709551616",
       "tessera: --seed: need a whole number from 0 to 18446744073709551615, got "
       "'18446744073709551616' (see tessera make-model --help)\n"},
      {"bench --gpu-baseline nan",
       "tessera: --gpu-baseline: need a finite number above 0, got 'nan' (see tessera bench "
       "--help)\n"},
      {"tune --start-pixels -1",
       "tessera: --start-pixels: need a finite number above 0, got '-1' (see tessera tune "
       "--help)\n"},
      {"bench -t 1 --layout core",
       "tessera: --layout excludes --threads (see tessera bench --help)\n"},
      {"topo --synthetic ''",
       "tessera: topo: --synthetic needs a description, e.g. 'pack:2 numa:12 core:16 pu:2'\n"}};
  for (const auto& [args, message] : cases) {
    const auto r = run_cli(args);
    EXPECT_EQ(r.exit_code, 2) << args;
    EXPECT_EQ(r.err, message) << args;
  }
  EXPECT_EQ(run_cli("bench --help").exit_code, 0);
  // The release, how the binary was built, and each engine's library.
  const std::string version = run_cli("--version").out;
  EXPECT_EQ(version.rfind("tessera 0.1.0\nbuilt: ", 0), 0u) << version;
  EXPECT_NE(version.find(", C++20\nengines: ort 1."), std::string::npos) << version;
  EXPECT_NE(version.find(", native oneDNN "), std::string::npos) << version;
}

TEST(BenchCli, MissingModel) {
  const auto r = run_cli("bench -m " + kDir + "/missing.onnx -b 4");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "tessera: " + kDir + "/missing.onnx: no such file\n");
  EXPECT_EQ(r.out, "");
}

TEST(BenchCli, CorruptModel) {
  std::filesystem::create_directories(kDir);
  const std::string path = kDir + "/corrupt.onnx";
  std::ofstream(path) << "\x08\x01garbage";
  const auto r = run_cli("bench -m " + path + " -t 1 -b 4 --batches 1 -r 1");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err.rfind("tessera: " + path + ": not a loadable ONNX model (ONNX Runtime: ", 0), 0u)
      << r.err;
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
}

TEST(BenchCli, BatchOfZero) {
  const auto r = run_cli("bench -m " + small_model() + " -b 0");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "tessera: batch size must be at least 1 (got 0)\n");
}

TEST(BenchCli, CombinationsAnEngineCannotRunAreListedAsSkipped) {
  const auto r =
      run_cli("bench -m " + small_model() + " -t 1 -b 4 --batches 1 -r 1 --precision fp32,int8");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("| ort fp32 |"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("int8 |"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("skipped: cpu ort int8: the ort engine computes fp32 on cpu, not int8 "
                       "(--engine native does)\n"),
            std::string::npos)
      << r.out;
}

TEST(BenchCli, OptionsEveryCaseShares) {
  auto r = run_cli("bench -m " + small_model() + " -t 1 -b 4 --precision fp8");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "tessera: unknown precision 'fp8' (expected fp32, tf32, fp16, bf16 or int8)\n");
  EXPECT_EQ(r.out, "");
  r = run_cli("bench -m " + small_model() + " -t 1 -b 4 --engine onnx");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err.rfind("tessera: unknown engine 'onnx' (expected ort", 0), 0u) << r.err;
  // A precision no engine of the sweep runs: nothing to measure.
  r = run_cli("bench -m " + small_model() + " -t 1 -b 4 --engine ort --precision bf16");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err,
            "tessera: no engine of the sweep can run: cpu ort bf16: the ort engine computes fp32 "
            "on cpu, not bf16 (--engine native does)\n");
  EXPECT_EQ(r.out, "");
  r = run_cli("bench -m " + small_model() + " -t 1 -b 4 --opt-level 5");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "tessera: unknown graph optimisation level 5 (expected 0, 1, 2 or 99)\n");
  EXPECT_EQ(r.out, "");
}

TEST(BenchCli, UnknownOutputFormat) {
  const auto r = run_cli("bench -m " + small_model() + " --format xml");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "tessera: unknown output format 'xml' (expected md, csv or json)\n");
}

TEST(BenchCli, BaselineOutOfRange) {
  const auto r = run_cli("bench -m " + small_model() + " -t 1 -b 4 --baseline 3");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "tessera: --baseline 3 is not a row (1..1)\n");
}

TEST(BenchCli, CudaWithoutAGpuIsOneClearLine) {
  if (std::filesystem::exists("/dev/nvidia0")) GTEST_SKIP() << "a GPU is present";
  const auto r = run_cli("bench -m " + small_model() + " --device cuda:0 -b 4 --batches 1 -r 1");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err.rfind("tessera: cuda:0: the CUDA execution provider is not available (", 0), 0u)
      << r.err;
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
}

TEST(ConvertModelCli, WritesAFloat16ModelThatOnlyFp16Runs) {
  const std::string out = kDir + "/small_fp16.onnx";
  std::filesystem::remove(out);
  auto r = run_cli("convert-model -m " + small_model() + " -o " + out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("wrote " + out + ": " + small_model() + " in float16 (", 0), 0u) << r.out;
  EXPECT_LT(std::filesystem::file_size(out), std::filesystem::file_size(small_model()));
  // It computes in float16: on the CPU (fp32) it is refused rather than benchmarked as fp32.
  r = run_cli("bench -m " + out + " -t 1 -b 4 --batches 1 -r 1 --warmup 0 --format csv");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "tessera: " + out +
                       ": a float16 model (as tessera convert-model writes); ort fp32 on cpu needs "
                       "the float32 model\n");

  r = run_cli("convert-model -m " + small_model() + " -o " + out);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "tessera: " + out + ": already exists (use --force to overwrite)\n");
  r = run_cli("convert-model -m " + small_model() + " -o " + out + " --force --to bf16");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "tessera: convert-model: unknown target precision 'bf16' (expected fp16)\n");
  r = run_cli("convert-model -m " + kDir + "/none.onnx -o " + kDir + "/none_fp16.onnx");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "tessera: " + kDir + "/none.onnx: cannot be read\n");
  EXPECT_FALSE(std::filesystem::exists(kDir + "/none_fp16.onnx"));
}

TEST(MakeModelCli, RefusesToOverwrite) {
  small_model();
  const auto r =
      run_cli("make-model -o " + small_model() + " --d-model 32 --layers 1 --heads 2 --ffn 64");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find(small_model()), std::string::npos) << r.err;
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
}

}  // namespace
