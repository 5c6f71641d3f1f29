#!/usr/bin/env bash
# Configures and builds Ferry with Ninja and ccache into build/ (or $FERRY_BUILD_DIR); extra args go to cmake --build (e.g. --target ferry).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
build_dir=${FERRY_BUILD_DIR:-build}
# ccache shares results between clones in different folders (CI builds a fresh clone each time):
# paths under the tree are hashed relative to it, and the working directory is not hashed.
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD} CCACHE_NOHASHDIR=${CCACHE_NOHASHDIR:-1}
extra=()
[ "${FERRY_SANITIZE:-OFF}" = "ON" ] && extra+=(-DFERRY_SANITIZE=ON)
if [ ! -f "$build_dir/build.ninja" ]; then
  cmake -S . -B "$build_dir" -G Ninja "${extra[@]}" >/dev/null
fi
cmake --build "$build_dir" -j "${FERRY_JOBS:-$(nproc)}" "$@"
