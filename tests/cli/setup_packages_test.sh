#!/usr/bin/env bash
# scripts/setup.sh installs for the demo only what building and running tessera needs, and for the
# tests the rest too: run against stand-ins for dpkg-query, apt-cache, apt-get and sudo (the real
# ones would change this machine) that log what would be installed. Checks:
#   --for run (the default) installs the build and run packages, none of the test-only ones;
#   --for test adds the test packages, each optional one in its own apt-get call, and an optional
#     package the distribution lacks is skipped with one line;
#   nothing is installed when everything is there, nor with --no-apt;
#   a bad --for is a usage error (exit 2, one line), in setup.sh and build.sh alike.
#
#   setup_packages_test.sh SOURCE_DIR WORK_DIR
set -uo pipefail
source=$(cd "$1" && pwd -P)
work=$2
fail() {
  echo "setup_packages_test: $*" >&2
  exit 1
}
[ -e "$source/third_party/onnxruntime/lib/libonnxruntime.so" ] ||
  fail "no ONNX Runtime SDK in $source/third_party (setup.sh would download it)"

rm -rf "$work"
mkdir -p "$work/bin" || fail "cannot create $work"
log=$work/apt.log
# dpkg-query: the packages listed in $work/installed are installed, no other.
cat >"$work/bin/dpkg-query" <<'EOF'
#!/bin/sh
for package; do :; done
grep -qx "$package" "$FAKE_ROOT/installed" 2>/dev/null || exit 1
printf 'install ok installed'
EOF
# apt-cache policy: every package has a candidate but those listed in $work/unavailable.
cat >"$work/bin/apt-cache" <<'EOF'
#!/bin/sh
for package; do :; done
if grep -qx "$package" "$FAKE_ROOT/unavailable" 2>/dev/null; then
  printf '%s:\n  Installed: (none)\n  Candidate: (none)\n' "$package"
else
  printf '%s:\n  Installed: (none)\n  Candidate: 1.0\n' "$package"
fi
EOF
cat >"$work/bin/apt-get" <<'EOF'
#!/bin/sh
echo "apt-get $*" >>"$FAKE_ROOT/apt.log"
EOF
printf '#!/bin/sh\nexec "$@"\n' >"$work/bin/sudo"
# npm only assembles ONNX Runtime, which is there: never run.
printf '#!/bin/sh\nexit 1\n' >"$work/bin/npm"
chmod +x "$work/bin/"*
export FAKE_ROOT=$work

setup() {  # setup ARGS...: runs setup.sh with the stand-ins; its output in $work/out
  : >"$log"
  PATH="$work/bin:$PATH" bash "$source/scripts/setup.sh" "$@" >"$work/out" 2>&1 ||
    fail "setup.sh $* failed: $(tail -n 3 "$work/out")"
}
# The packages apt-get was asked to install, one a line.
installs() { grep ' install ' "$log" | sed 's/.* -qq --no-install-recommends //' | tr ' ' '\n'; }
needs() {  # needs PACKAGE...: each was installed
  for p in "$@"; do installs | grep -qx "$p" || fail "$label: $p not installed ($(installs | xargs))"; done
}
lacks() {  # lacks PACKAGE...: none was installed
  for p in "$@"; do ! installs | grep -qx "$p" || fail "$label: $p installed, which it must not be"; done
}
test_only=(libgtest-dev clang-format python3-onnx python3-gdal python3-torch chromium clang
           libclang-rt-dev python3-rasterio python3-pyproj python3-crc32c)
run_needs=(build-essential cmake ninja-build libdnnl-dev libonnx-dev libgdal-dev gdal-bin
           libblosc-dev libhwloc-dev libopenmpi-dev python3-numpy)

: >"$work/installed"
: >"$work/unavailable"
label="--for run"
setup --for run
needs "${run_needs[@]}"
lacks "${test_only[@]}"
label="no --for"
setup
needs "${run_needs[@]}"
lacks "${test_only[@]}"

echo chromium >"$work/unavailable"
label="--for test"
setup --for test
needs "${run_needs[@]}" libgtest-dev clang-format python3-onnx python3-gdal python3-torch clang \
  libclang-rt-dev python3-rasterio python3-pyproj python3-crc32c
lacks chromium
grep -qx 'setup: chromium is not available here; the tests that need it will be skipped' "$work/out" ||
  fail "--for test: no line about chromium: $(cat "$work/out")"
grep -q 'install -y -qq --no-install-recommends python3-torch$' "$log" ||
  fail "--for test: python3-torch not installed on its own: $(cat "$log")"

# Everything there: no apt-get at all (not even its package lists).
installs_all() { setup "$@"; installs >>"$work/installed"; }
: >"$work/unavailable"
installs_all --for test
label="all installed"
setup --for test
[ ! -s "$log" ] || fail "$label: apt-get called: $(cat "$log")"
: >"$work/installed"
label="--no-apt"
setup --no-apt --for test
[ ! -s "$log" ] || fail "$label: apt-get called: $(cat "$log")"

for script in setup.sh build.sh; do
  out=$(PATH="$work/bin:$PATH" bash "$source/scripts/$script" --for tests 2>&1)
  status=$?
  [ "$status" = 2 ] || fail "$script --for tests exited $status, not 2: $out"
  [ "$out" = "$script: --for takes run or test, not 'tests'" ] || fail "$script --for tests: $out"
done
echo "setup_packages_test: ok"
