#!/usr/bin/env bash
# Ferry's main job as far as it exists today: build `ferry` and validate the shipped examples
# as a GitOps pipeline would, then show what an invalid resource looks like.
# (The replication quickstart with local registries replaces this once the engine lands.)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh --target ferry >/dev/null
ferry=${FERRY_BUILD_DIR:-build}/operator/ferry

echo "== ferry validate -f examples/"
"$ferry" validate -f examples/

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat > "$tmp/too-wide.yaml" <<'YAML'
apiVersion: ferry.dev/v1alpha1
kind: ReplicationConfig
metadata: {name: too-wide}
spec:
  registryId: "111111111111"
  region: us-west-2
  rules:
  - destinations: [{region: cn-north-1, registryId: "111111111111"}]
    repositoryFilters: [{filter: Prod, filterType: WILDCARD}]
YAML
echo
echo "== ferry validate -f too-wide.yaml (an invalid resource; exit code 1 expected)"
set +e
"$ferry" validate -f "$tmp/too-wide.yaml"
rc=$?
set -e
echo "exit code: $rc"
[ "$rc" -eq 1 ]
