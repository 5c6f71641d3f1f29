#!/usr/bin/env bash
# Installs what is missing, builds everything and runs every test through CTest.
# FERRY_SANITIZE=ON builds the tests with ASan+UBSan in build-asan/.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${FERRY_SANITIZE:-OFF}" = "ON" ]; then
  export FERRY_BUILD_DIR=${FERRY_BUILD_DIR:-build-asan}
fi
build_dir=${FERRY_BUILD_DIR:-build}
bash scripts/build.sh
cd "$build_dir"
ctest --output-on-failure -j "${FERRY_TEST_JOBS:-2}" "$@"
