#!/usr/bin/env bash
# Installs what the tests need and builds every target (scripts/build.sh --for test), then runs
# the whole test suite: unit tests, CLI tests and the numpy oracles. Extra arguments go to ctest
# (e.g. -R model -V).
#
# Then, unless TESSERA_SANITIZERS=0 (CI runs them all):
#   1. build-asan/: AddressSanitizer + UndefinedBehaviorSanitizer, every test but the MPI ones
#      (mpirun and OpenMPI's own leaks; they run under TSan below);
#   2. build-tsan/: ThreadSanitizer, the runtime and infer tests (the threaded code);
#   3. the .npy header fuzzer (libFuzzer, clang only) for TESSERA_FUZZ_SECONDS (default 60),
#      starting from tests/fuzz/corpus/npy/.
# Suppressions (tests/sanitizers/) cover only the prebuilt libraries (ONNX Runtime, hwloc,
# OpenMP), never tessera's code. Any step that fails makes this script fail.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/build.sh --for test
step() {  # step NAME COMMAND...: runs it and prints how long it took
  local name=$1 start=$SECONDS
  shift
  echo "test.sh: ${name}..."
  "$@"
  echo "test.sh: ${name} took $((SECONDS - start)) s"
}
step "Release tests" ctest --test-dir build --output-on-failure -j"$(nproc)" "$@"

[ "${TESSERA_SANITIZERS:-1}" = 0 ] && exit 0
generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
supp="$root/tests/sanitizers"
# Built like Release but at -O1 with line tables: fast enough, and stacks that name the line.
sanitizer_build() {  # sanitizer_build DIR FLAGS TARGET...
  local dir=$1 flags=$2
  shift 2
  cmake -S . -B "$dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 $flags -fno-omit-frame-pointer" \
    -DCMAKE_EXE_LINKER_FLAGS="$flags" -DCMAKE_SHARED_LINKER_FLAGS="$flags" >/dev/null
  cmake --build "$dir" -j"$(nproc)" "$@"
}

asan="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
step "ASan+UBSan build" sanitizer_build build-asan "$asan"
# intercept_tls_get_addr=0: GCC 12's LeakSanitizer otherwise crashes in its tracer on the
# dynamic TLS of a library that a dependency loads and unloads ("Tracer caught signal 11").
# HWLOC_PLUGINS_BLACKLIST: hwloc's PCI plugin leaks in a module it unloads, which no
# suppression can name; the CPU-only sanitizer runs need no PCI devices (only GPUs are found
# through them).
step "ASan+UBSan tests" env HWLOC_PLUGINS_BLACKLIST=hwloc_pci \
  ASAN_OPTIONS="detect_leaks=1:intercept_tls_get_addr=0:allow_user_segv_handler=1" \
  LSAN_OPTIONS="suppressions=$supp/lsan.supp:print_suppressions=0" \
  UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:suppressions=$supp/ubsan.supp" \
  ctest --test-dir build-asan --output-on-failure -j"$(nproc)" \
  -E '^mpi_infer_' "$@"

step "TSan build" sanitizer_build build-tsan "-fsanitize=thread" \
  --target tessera test_runtime test_infer
step "TSan tests" env \
  TSAN_OPTIONS="suppressions=$supp/tsan.supp:halt_on_error=1:second_deadlock_stack=1" \
  ctest --test-dir build-tsan --output-on-failure -j"$(nproc)" -L '^(runtime|infer)$' "$@"

if command -v clang++ >/dev/null 2>&1; then
  fuzz() {
    cmake -S . -B build-fuzz "${generator[@]}" -DCMAKE_CXX_COMPILER=clang++ -DTESSERA_FUZZ=ON \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build build-fuzz -j"$(nproc)" --target npy_header_fuzz
    # New inputs go to build-fuzz/corpus; the seed corpus in the tree is only read.
    mkdir -p build-fuzz/corpus
    build-fuzz/tests/fuzz/npy_header_fuzz -max_total_time="${TESSERA_FUZZ_SECONDS:-60}" \
      -print_final_stats=1 build-fuzz/corpus tests/fuzz/corpus/npy
  }
  step "npy header fuzzer" fuzz
else
  echo "test.sh: no clang++ (scripts/setup.sh --for test installs it where Debian has it): fuzzer skipped"
fi
