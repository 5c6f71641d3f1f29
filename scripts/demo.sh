#!/usr/bin/env bash
# Ferry's main job, end to end on this machine: examples/quickstart/run.sh (three local
# registries, `ferry run`, a push with skopeo, replication status), then stops everything.
set -euo pipefail
exec bash "$(dirname "$0")/../examples/quickstart/run.sh" "$@"
