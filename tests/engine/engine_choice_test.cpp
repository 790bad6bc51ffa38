// The typed engine choices (engine/choice/engine_choice.h) and the backend table
// (engine/engine_spec.h): one parse of each text, the one list of valid values in errors and
// help texts, and what each backend runs where.

#include "tessera/engine/choice/engine_choice.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "tessera/common/error.h"
#include "tessera/engine/engine_spec.h"
#include "test_models.h"
#include "test_support.h"

namespace tessera {
namespace {

using testing::error_of;

TEST(EngineChoice, PrecisionsReadBackTheirNames) {
  for (const Precision p : all_precisions()) EXPECT_EQ(parse_precision(precision_name(p)), p);
  EXPECT_EQ(parse_precision("bf16"), Precision::bf16);
  EXPECT_EQ(precision_choices(), "fp32, tf32, fp16, bf16 or int8");
  EXPECT_EQ(parse_optional_precision(""), std::nullopt);
  EXPECT_EQ(parse_optional_precision("int8"), Precision::int8);
  EXPECT_EQ(error_of([] { parse_precision("fp64"); }),
            "unknown precision 'fp64' (expected fp32, tf32, fp16, bf16 or int8)");
  EXPECT_EQ(error_of([] { parse_optional_precision("FP32"); }),
            "unknown precision 'FP32' (expected fp32, tf32, fp16, bf16 or int8)");
}

TEST(EngineChoice, DevicesReadBackTheirNames) {
  EXPECT_TRUE(parse_device("cpu").on_cpu());
  EXPECT_EQ(parse_device("cuda"), (Device{0, GpuPath::automatic}));
  EXPECT_EQ(parse_device("cuda+io"), (Device{0, GpuPath::io}));
  EXPECT_EQ(parse_device("cuda:12+graph"), (Device{12, GpuPath::graph}));
  for (const char* text : {"cpu", "cuda:0", "cuda:1+io", "cuda:7+graph"}) {
    EXPECT_EQ(parse_device(text).name(), text);
    EXPECT_EQ(parse_device(parse_device(text).name()), parse_device(text));
  }
  EXPECT_EQ(parse_device("cuda:3+io").plain_name(), "cuda:3");
  for (const char* bad : {"gpu", "cuda:", "cuda:+io", "cuda:0+fast", "cuda:1234", "cuda:-1", ""}) {
    EXPECT_EQ(error_of([&] { parse_device(bad); }),
              std::string("unknown device '") + bad + "' (expected cpu or cuda:N[+io|+graph])");
  }
}

TEST(BackendTable, ListsEachBackendOnce) {
  EXPECT_EQ(backend_choices(), "ort or native");
  EXPECT_EQ(find_backend(kNativeBackend).name, "native");
  EXPECT_EQ(error_of([] { find_backend("torch"); }),
            "unknown engine 'torch' (expected ort, native)");
  EXPECT_EQ(precision_choices_by_device(),
            "fp32, tf32 (GPU), fp16 (GPU), bf16 (native CPU), int8 (native CPU)");
  EXPECT_EQ(backend_version(kNativeBackend).rfind("oneDNN ", 0), 0u);
  EXPECT_EQ(backend_version(kOrtBackend).rfind("1.", 0), 0u);
}

TEST(BackendTable, ResolvesEachBackendsDefaultAndRefusesWhatItCannotRun) {
  EXPECT_EQ(resolve_engine_spec(kOrtBackend, parse_device("cpu")).precision, Precision::fp32);
  EXPECT_EQ(resolve_engine_spec(kOrtBackend, parse_device("cuda:1")).precision, Precision::tf32);
  EXPECT_EQ(resolve_engine_spec(kOrtBackend, Device{}, Precision::tf32).precision,
            Precision::fp32);  // a GPU matmul mode: fp32 on a CPU
  EXPECT_EQ(resolve_engine_spec(kNativeBackend, Device{}, Precision::int8).label(), "native int8");
  EXPECT_EQ(error_of([] { resolve_engine_spec(kNativeBackend, parse_device("cuda+io")); }),
            "cuda:0+io: the native engine runs on the cpu only");
  EXPECT_EQ(error_of([] { resolve_engine_spec(kNativeBackend, Device{}, Precision::fp16); }),
            "cpu: the native engine computes fp32, bf16, int8 on cpu, not fp16");
  EXPECT_EQ(engine_cannot_run(kOrtBackend, Device{}, Precision::bf16),
            "the ort engine computes fp32 on cpu, not bf16 (--engine native does)");
  EXPECT_EQ(engine_cannot_run(kOrtBackend, parse_device("cuda:0"), Precision::int8),
            "the ort engine computes tf32, fp32, fp16 on cuda, not int8");
  EXPECT_EQ(engine_cannot_run(kOrtBackend, parse_device("cuda:0"), Precision::fp16), "");
  // The CLI's edge: the engine first, then the precision, then the device.
  EXPECT_EQ(error_of([] { parse_engine_spec("torch", "tpu", "fp64"); }),
            "unknown engine 'torch' (expected ort, native)");
  EXPECT_EQ(error_of([] { parse_engine_spec(kOrtBackend, "tpu", "fp64"); }),
            "unknown precision 'fp64' (expected fp32, tf32, fp16, bf16 or int8)");
  EXPECT_EQ(parse_engine_spec(kOrtBackend, "cuda:2+graph", "fp16").device,
            (Device{2, GpuPath::graph}));
}

TEST(BackendTable, OptionsBelongToTheirBackend) {
  EXPECT_TRUE(backend_takes_option(kOrtBackend, "optimization_level"));
  EXPECT_FALSE(backend_takes_option(kNativeBackend, "optimization_level"));
  EXPECT_EQ(backend_option("optimization_level").flag, "--opt-level");
  EXPECT_NO_THROW(check_backend_option(kOrtBackend, "optimization_level", "2"));
  EXPECT_EQ(error_of([] { check_backend_option(kNativeBackend, "optimization_level", "2"); }),
            "the native engine has no option 'optimization_level'");
  EXPECT_EQ(error_of([] { check_option_of_any_backend("optimization_level", "5"); }),
            "unknown graph optimisation level 5 (expected 0, 1, 2 or 99)");
  EXPECT_EQ(error_of([] { check_option_of_any_backend("fast_math", "1"); }),
            "no engine has an option 'fast_math'");
}

// The default engine is the backend table's fastest that runs the model on every device: the
// native engine for a Tessera model on the CPU, ONNX Runtime for a graph the native engine cannot
// read or a GPU in the list, each with the line that says why.
TEST(DefaultEngine, TheFastestBackendThatRunsTheModelOnEveryDevice) {
  const std::string dir = testing::fresh_test_dir("default_engine");
  const std::string tessera_model =
      testing::write_test_model(dir, "tiny.onnx", testing::tiny_model_config());
  const EngineChoice on_cpu = choose_default_engine(tessera_model, {Device{}});
  EXPECT_EQ(on_cpu.backend, kNativeBackend);
  EXPECT_EQ(on_cpu.reason, "default: fastest fp32 engine here");

  const std::string other = testing::write_batch_multiple_model(dir, "other.onnx", 1);
  const EngineChoice refused = choose_default_engine(other, {Device{}});
  EXPECT_EQ(refused.backend, kOrtBackend);
  EXPECT_EQ(refused.reason,
            "native cannot run " + other +
                ": initializer 's2.embed.0.bias' is missing (not a Tessera v1.0 model?)");

  const EngineChoice with_gpu =
      choose_default_engine(tessera_model, {Device{}, parse_device("cuda:0")});
  EXPECT_EQ(with_gpu.backend, kOrtBackend);
  EXPECT_EQ(with_gpu.reason,
            "native cannot run on cuda:0 (the native engine runs on the cpu only)");
}

TEST(DefaultEngine, EveryBackendHasItsOwnSpeedRank) {
  std::vector<int> ranks;
  for (const Backend& backend : engine_backends()) ranks.push_back(backend.speed_rank);
  std::sort(ranks.begin(), ranks.end());
  EXPECT_EQ(std::adjacent_find(ranks.begin(), ranks.end()), ranks.end());
  EXPECT_EQ(ranks.front(), find_backend(kNativeBackend).speed_rank);
}

}  // namespace
}  // namespace tessera
