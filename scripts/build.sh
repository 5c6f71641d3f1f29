#!/usr/bin/env bash
# Configures and builds Ferry with Ninja and ccache into build/ (or $FERRY_BUILD_DIR); extra args go to cmake --build (e.g. --target ferry).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
build_dir=${FERRY_BUILD_DIR:-build}
extra=()
[ "${FERRY_SANITIZE:-OFF}" = "ON" ] && extra+=(-DFERRY_SANITIZE=ON)
if [ ! -f "$build_dir/build.ninja" ]; then
  cmake -S . -B "$build_dir" -G Ninja "${extra[@]}" >/dev/null
fi
cmake --build "$build_dir" -j "${FERRY_JOBS:-$(nproc)}" "$@"
