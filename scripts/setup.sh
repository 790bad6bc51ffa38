#!/usr/bin/env bash
# Installs what tessera needs on Debian/Ubuntu, and assembles an ONNX Runtime SDK (include/ +
# lib/) from the official binaries published on npm.
#
#   scripts/setup.sh              what building and running tessera needs (Debian packages) +
#                                 the ORT CPU SDK into third_party/onnxruntime
#   scripts/setup.sh --for test   also what only the tests need (GoogleTest, the independent
#                                 readers, PyTorch, chromium, clang for the fuzzer)
#   scripts/setup.sh --with-cuda  also the CUDA execution provider library, and the core library
#                                 of a GPU build in place of the CPU one (it runs the CPU too)
#   scripts/setup.sh --no-apt     skip the Debian packages (already installed / not root)
#
# Idempotent: a second run checks what is there and downloads nothing.
set -euo pipefail

ORT_VERSION=1.29.0
ORT_NPM_PKG=com.github.asus4.onnxruntime@0.4.9
ORT_NPM_SHA512=BkzxduSZ9IkeDP6Q8lz2TFU2ie7hSSvS7ZIfzMooExoq0CNzJnuuGaUJ7IsojBgqO4ouD1jXah8OYyJbCN29Fg==
ORT_CUDA_NPM_PKG=com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9
ORT_CUDA_NPM_SHA512=FopIhNE/Ng+v2X65wVc9clPCBCvhvA53Hxo2U0Kf5fGdVsC7iCA+mZ0KLWggcQAj7TIZ6pNidR4AC10g74Xo6w==
# The CPU package's libonnxruntime.so is built without CUDA support ("CUDA execution provider is
# not enabled in this build"): the CUDA provider needs the core library of a GPU build. Microsoft's
# own Node.js package ships that one for Linux x64 (same version, same C API).
ORT_GPU_CORE_NPM_PKG=onnxruntime-node@1.29.0
ORT_GPU_CORE_NPM_SHA512=WjiVVB72riILz8HbYvxvmjKyE/WmkYoSfKY++axo5jAR609HQg8MwiG/HhShpTcJfmmAdzxxmB+MMST3A+SiPA==

root=$(cd "$(dirname "$0")/.." && pwd)
sdk="$root/third_party/onnxruntime"
with_cuda=0
with_apt=1
purpose=run
while [ "$#" -gt 0 ]; do
  case "$1" in
    --with-cuda) with_cuda=1 ;;
    --no-apt) with_apt=0 ;;
    --for)
      purpose=${2:-}
      [ "$#" -ge 2 ] && shift
      ;;
    --for=*) purpose=${1#--for=} ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
  shift
done
case "$purpose" in
  run|test) ;;
  *) echo "setup.sh: --for takes run or test, not '$purpose'" >&2; exit 2 ;;
esac

# What building and running tessera needs (scripts/demo.sh, scripts/build.sh, the Dockerfile).
RUN_PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  libhwloc-dev hwloc libnuma-dev numactl
  libopenmpi-dev openmpi-bin
  nlohmann-json3-dev libcli11-dev libfmt-dev
  libonnx-dev libprotobuf-dev protobuf-compiler libdnnl-dev libssl-dev
  libgdal-dev gdal-bin libblosc-dev
  python3-numpy  # tessera import reads checkpoints with it
)
# What only the tests need (scripts/test.sh): GoogleTest, the numpy/ONNX oracles' onnx, GDAL's
# Python reader of the geospatial outputs, and clang-format for the sources.
TEST_PACKAGES=(
  libgtest-dev clang-format python3-onnx python3-gdal
)
# Test-only too, installed where the distribution has them; the tests that use them skip without
# them (Ubuntu, for one, ships chromium only as a snap).
TEST_OPTIONAL_PACKAGES=(
  python3-torch  # the PyTorch peer (tools/torch_peer.py), import --trust-pickle, their tests
  chromium       # renders the SVG charts of `tessera report` in its tests
  clang libclang-rt-dev  # the .npy header fuzzer (libFuzzer) that scripts/test.sh runs
  python3-rasterio python3-pyproj python3-crc32c  # independent readers of the geospatial outputs
)
DEBIAN_PACKAGES=("${RUN_PACKAGES[@]}")
OPTIONAL_PACKAGES=()
if [ "$purpose" = test ]; then
  DEBIAN_PACKAGES+=("${TEST_PACKAGES[@]}")
  OPTIONAL_PACKAGES+=("${TEST_OPTIONAL_PACKAGES[@]}")
fi

if [ "$with_apt" = 1 ]; then
  installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
  # The policy is captured before it is searched: with `set -o pipefail`, `apt-cache ... | grep -q`
  # fails whenever grep exits first and apt-cache dies of SIGPIPE.
  available() {
    local policy
    policy=$(apt-cache policy "$1" 2>/dev/null) || return 1
    [[ "$policy" == *"Candidate: "* && "$policy" != *"Candidate: (none)"* ]]
  }
  sudo_cmd=""
  [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  missing=() optional=()
  for p in "${DEBIAN_PACKAGES[@]}"; do installed "$p" || missing+=("$p"); done
  for p in "${OPTIONAL_PACKAGES[@]}"; do installed "$p" || optional+=("$p"); done
  # npm comes with the machine's Node.js where one is installed; Debian's npm only otherwise.
  command -v npm >/dev/null 2>&1 || missing+=(npm)
  # Package lists are fetched before anything is installed, and before optional packages are
  # looked up on a machine that has none yet (a fresh container).
  updated=0
  update_lists() {
    [ "$updated" = 1 ] || $sudo_cmd apt-get update -qq
    updated=1
  }
  if [ "${#optional[@]}" -gt 0 ] && ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
    update_lists
  fi
  apt_install() { DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "$@" >/dev/null; }
  if [ "${#missing[@]}" -gt 0 ]; then
    update_lists
    echo "setup: installing ${missing[*]}"
    apt_install "${missing[@]}"
  fi
  # Each optional package on its own: one that cannot be installed costs only its tests.
  skipped="the tests that need it will be skipped"
  for p in "${optional[@]}"; do
    if ! available "$p"; then
      echo "setup: $p is not available here; $skipped"
      continue
    fi
    update_lists
    echo "setup: installing $p"
    apt_install "$p" || echo "setup: $p could not be installed; $skipped"
  done
fi

# Downloads an npm package tarball (no install scripts run) and checks its sha512.
# Prints the path of the verified tarball.
fetch_npm() {
  local pkg=$1 want=$2 dir=$3
  mkdir -p "$dir"
  local tgz
  tgz=$(cd "$dir" && npm pack --silent "$pkg" 2>/dev/null | tail -n 1)
  local got
  got=$(openssl dgst -sha512 -binary "$dir/$tgz" | base64 -w0)
  if [ "$got" != "$want" ]; then
    rm -f "$dir/$tgz"
    echo "setup: $pkg: sha512 mismatch (got $got)" >&2
    exit 1
  fi
  echo "$dir/$tgz"
}

if [ -f "$sdk/lib/libonnxruntime.so" ] && [ -e "$sdk/lib/libonnxruntime.so.1" ] && [ -f "$sdk/include/onnxruntime_cxx_api.h" ] \
   && [ "$(cat "$sdk/VERSION" 2>/dev/null)" = "$ORT_VERSION" ]; then
  echo "setup: ONNX Runtime $ORT_VERSION SDK present in $sdk"
else
  echo "setup: assembling ONNX Runtime $ORT_VERSION SDK in $sdk"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  tgz=$(fetch_npm "$ORT_NPM_PKG" "$ORT_NPM_SHA512" "$tmp")
  tar -xzf "$tgz" -C "$tmp"
  rm -rf "$sdk.partial"
  mkdir -p "$sdk.partial/include" "$sdk.partial/lib"
  cp "$tmp"/package/Plugins/iOS~/onnxruntime.xcframework/ios-arm64/onnxruntime.framework/Headers/*.h "$sdk.partial/include/"
  cp "$tmp"/package/Plugins/Linux/x64/libonnxruntime*.so "$sdk.partial/lib/"
  # The library's SONAME is libonnxruntime.so.1: binaries look for that name at run time.
  ln -s libonnxruntime.so "$sdk.partial/lib/libonnxruntime.so.1"
  echo "$ORT_VERSION" > "$sdk.partial/VERSION"
  rm -rf "$sdk"
  mv "$sdk.partial" "$sdk"
  rm -rf "$tmp"
  trap - EXIT
fi

# Installs one file of a verified npm package into the SDK: install_npm_file PKG SHA512 PATH DEST,
# where PATH is the file's path inside the package and DEST its name under $sdk/lib. The file
# appears under its final name only once complete.
install_npm_file() {
  local pkg=$1 want=$2 path=$3 dest=$4 tmp tgz
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  tgz=$(fetch_npm "$pkg" "$want" "$tmp")
  tar -xzf "$tgz" -C "$tmp" "package/$path" || { echo "setup: $path not found in $pkg" >&2; exit 1; }
  cp "$tmp/package/$path" "$sdk/lib/.$dest.partial"
  mv "$sdk/lib/.$dest.partial" "$sdk/lib/$dest"
  rm -rf "$tmp"
  trap - EXIT
}

if [ "$with_cuda" = 1 ]; then
  if [ -f "$sdk/GPU_CORE" ]; then
    echo "setup: GPU build of libonnxruntime.so present"
  else
    echo "setup: fetching the GPU build of libonnxruntime.so ($ORT_GPU_CORE_NPM_PKG)"
    install_npm_file "$ORT_GPU_CORE_NPM_PKG" "$ORT_GPU_CORE_NPM_SHA512" \
      bin/napi-v6/linux/x64/libonnxruntime.so.1 libonnxruntime.so
    echo "$ORT_GPU_CORE_NPM_PKG" > "$sdk/GPU_CORE"
  fi
  if [ -f "$sdk/lib/libonnxruntime_providers_cuda.so" ]; then
    echo "setup: CUDA execution provider present"
  else
    echo "setup: fetching the CUDA execution provider (229 MB)"
    install_npm_file "$ORT_CUDA_NPM_PKG" "$ORT_CUDA_NPM_SHA512" \
      Plugins/Linux/x64/libonnxruntime_providers_cuda.so libonnxruntime_providers_cuda.so
  fi
fi
echo "setup: done"
