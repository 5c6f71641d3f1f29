#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz with clang into build-fuzz/ (or $FERRY_FUZZ_BUILD_DIR)
# and runs each for FERRY_FUZZ_SECONDS (default 20) on a copy of its seed corpus; exits 1 on any
# crash, sanitizer report, leak, timeout or OOM, printing the input that caused it and the report.
# Arguments: target names (resource, policy, ...) to run only those. docs/testing.md#fuzzing.
set -euo pipefail
cd "$(dirname "$0")/.."
clang_version=19
bash scripts/install-deps.sh "clang-$clang_version" "libclang-rt-$clang_version-dev"
build_dir=${FERRY_FUZZ_BUILD_DIR:-build-fuzz}
seconds=${FERRY_FUZZ_SECONDS:-20}
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD} CCACHE_NOHASHDIR=${CCACHE_NOHASHDIR:-1}
if [ ! -f "$build_dir/build.ninja" ]; then
  CC="clang-$clang_version" CXX="clang++-$clang_version" \
    cmake -S . -B "$build_dir" -G Ninja -DFERRY_FUZZ=ON -DFERRY_TESTS=OFF >/dev/null
fi
cmake --build "$build_dir" -j "${FERRY_JOBS:-$(nproc)}"

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for dir in tests/fuzz/corpus/*/; do targets+=("$(basename "$dir")"); done
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/ferry-fuzz.XXXXXX")
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# Symbolized stacks in the reports (any llvm-symbolizer reads clang-19's DWARF well enough).
if [ -z "${ASAN_SYMBOLIZER_PATH:-}" ]; then
  for s in "llvm-symbolizer-$clang_version" llvm-symbolizer; do
    if command -v "$s" >/dev/null; then export ASAN_SYMBOLIZER_PATH=$(command -v "$s"); break; fi
  done
fi
failed=()
for t in "${targets[@]}"; do
  mkdir -p "$work/$t/artifacts"
  # Never grow the corpus in the tree: the run adds what it finds to its copy.
  cp -r "tests/fuzz/corpus/$t" "$work/$t/corpus"
  log="$work/$t/log"
  if "$build_dir/tests/fuzz/fuzz_$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="$work/$t/artifacts/" -print_final_stats=1 "$work/$t/corpus" >"$log" 2>&1; then
    done_line=$(grep -a '^#[0-9]*[[:space:]]*DONE' "$log" | tail -n 1 || true)
    echo "fuzz: $t ok: ${done_line:-no DONE line}"
  else
    failed+=("$t")
    echo "fuzz: $t FAILED; input(s):" >&2
    find "$work/$t/artifacts" -type f -printf '  %p\n' >&2
    # The sanitizer or libFuzzer report ends the log.
    tail -n 60 "$log" >&2
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: failed: ${failed[*]} (logs and inputs under $work)" >&2
  exit 1
fi
rm -rf "$work"
