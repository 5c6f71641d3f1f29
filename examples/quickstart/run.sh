#!/usr/bin/env bash
# Ferry quickstart: three local registries, `ferry run`, one push, replication visible in seconds.
# Everything runs on 127.0.0.1 under a temporary directory and is stopped (by PID) on exit.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

say "Building ferry (installs missing Debian packages on first run)"
bash scripts/build.sh --target ferry >/dev/null
ferry="$root/${FERRY_BUILD_DIR:-build}/operator/ferry"

work=$(mktemp -d /tmp/ferry-quickstart.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ferry_port=$(free_port)
token=quickstart-demo-token

declare -A port
for reg in qs-acct-a-us-east-1 qs-acct-a-us-west-2 qs-acct-b-eu-west-1; do
  port[$reg]=$(free_port)
  mkdir -p "$work/$reg/data"
  notify=""
  if [ "$reg" = qs-acct-a-us-east-1 ]; then
    notify="notifications:
  endpoints:
  - name: ferry
    url: http://127.0.0.1:$ferry_port/registry-events/$reg
    headers: {Authorization: [Bearer $token]}
    timeout: 2s
    threshold: 3
    backoff: 250ms
    ignore: {mediatypes: [application/octet-stream], actions: [pull]}"
  fi
  cat > "$work/$reg/config.yml" <<YAML
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $work/$reg/data}}
http: {addr: 127.0.0.1:${port[$reg]}}
$notify
YAML
  docker-registry serve "$work/$reg/config.yml" >"$work/$reg/registry.log" 2>&1 &
  pids+=($!)
done

mkdir -p "$work/manifests"
cp "$here"/manifests/*.yaml "$work/manifests/"
sed -i -e "s#127.0.0.1:5101#127.0.0.1:${port[qs-acct-a-us-east-1]}#" \
       -e "s#127.0.0.1:5102#127.0.0.1:${port[qs-acct-a-us-west-2]}#" \
       -e "s#127.0.0.1:5103#127.0.0.1:${port[qs-acct-b-eu-west-1]}#" "$work/manifests/registries.yaml"

wait_http() {
  for _ in $(seq 1 100); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "quickstart: $1 did not come up" >&2
  return 1
}
for reg in "${!port[@]}"; do wait_http "http://127.0.0.1:${port[$reg]}/v2/"; done
say "Three registries up: us-east-1 :${port[qs-acct-a-us-east-1]}  us-west-2 :${port[qs-acct-a-us-west-2]}  eu-west-1 (account 222222222222) :${port[qs-acct-b-eu-west-1]}"

"$ferry" validate -f "$work/manifests" >/dev/null
"$ferry" run --manifests "$work/manifests" --state-dir "$work/state" --listen "127.0.0.1:$ferry_port" \
  >"$work/ferry.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$ferry_port/readyz"
say "ferry run is up on :$ferry_port, replicating prod/* from us-east-1 to us-west-2 and to account 222222222222"

say "Building an image with umoci and pushing it to us-east-1 with skopeo"
umoci init --layout "$work/layout" >/dev/null
umoci new --image "$work/layout:v1" >/dev/null
echo "hello from Ferry's quickstart, $(date -u +%FT%TZ)" > "$work/hello.txt"
umoci insert --rootless --image "$work/layout:v1" "$work/hello.txt" /hello.txt >/dev/null
start=$(date +%s.%N)
skopeo copy --quiet --preserve-digests --dest-tls-verify=false "oci:$work/layout:v1" \
  "docker://127.0.0.1:${port[qs-acct-a-us-east-1]}/prod/hello:v1"
digest=$(skopeo inspect --raw --tls-verify=false "docker://127.0.0.1:${port[qs-acct-a-us-east-1]}/prod/hello:v1" | sha256sum | cut -d' ' -f1)
echo "pushed prod/hello:v1 sha256:$digest"

say "Waiting for replication (ferry status)"
status=""
for _ in $(seq 1 300); do
  if status=$("$ferry" status --state-dir "$work/state" --repository prod/hello --image v1 2>/dev/null) &&
     [ "$(grep -o '"status":"COMPLETE"' <<<"$status" | wc -l)" -eq 2 ]; then
    break
  fi
  sleep 0.1
done
elapsed=$(python3 -c "import time; print(f'{time.time()-$start:.2f}')")
echo "$status"
echo
printf '%-14s %-14s %-10s %-20s %s\n' REGION REGISTRYID STATUS DIGEST "SAME BYTES (skopeo inspect --raw)"
ok=0
while IFS='|' read -r region id st; do
  reg=$( [ "$region" = us-west-2 ] && echo qs-acct-a-us-west-2 || echo qs-acct-b-eu-west-1 )
  there=$(skopeo inspect --raw --tls-verify=false "docker://127.0.0.1:${port[$reg]}/prod/hello:v1" 2>/dev/null | sha256sum | cut -d' ' -f1)
  same=no
  [ "$there" = "$digest" ] && same=yes
  [ "$st" = COMPLETE ] && [ "$same" = yes ] && ok=$((ok + 1))
  printf '%-14s %-14s %-10s %-20s %s\n' "$region" "$id" "$st" "sha256:${digest:0:12}" "$same"
done < <(python3 -c '
import json, sys
for s in json.load(sys.stdin)["replicationStatuses"]:
    print("|".join([s["region"], s["registryId"], s["status"]]))
' <<<"$status")
echo
if [ "$ok" -eq 2 ]; then
  say "Replicated to both destinations in ${elapsed}s after the push finished. Stopping everything."
else
  echo "quickstart: replication did not complete; ferry log:" >&2
  tail -20 "$work/ferry.log" >&2
  exit 1
fi
