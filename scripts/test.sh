#!/usr/bin/env bash
# Installs what is missing, builds the test peers (scripts/test-peers.sh) and Ferry, and runs every
# test through CTest, then fuzzes every parser for a bounded time (scripts/fuzz.sh; FERRY_FUZZ_SECONDS
# per target, 0 skips it). FERRY_SANITIZE=ON builds the tests with ASan+UBSan in build-asan/.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${FERRY_SANITIZE:-OFF}" = "ON" ]; then
  export FERRY_BUILD_DIR=${FERRY_BUILD_DIR:-build-asan}
fi
build_dir=${FERRY_BUILD_DIR:-build}
bash scripts/install-deps.sh
# The last line test-peers.sh prints is the folder holding kube-apiserver, etcd, kubectl, helm...
FERRY_PEERS_BIN=$(bash scripts/test-peers.sh | tail -n 1)
export FERRY_PEERS_BIN
bash scripts/build.sh
(cd "$build_dir" && ctest --output-on-failure -j "${FERRY_TEST_JOBS:-2}" "$@")
if [ "${FERRY_FUZZ_SECONDS:-20}" != "0" ]; then
  bash scripts/fuzz.sh
fi
