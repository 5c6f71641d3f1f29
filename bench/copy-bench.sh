#!/usr/bin/env bash
# Copy benchmarks of SPEC §5: ferry copy vs skopeo copy / skopeo sync / raw streaming curl,
# on fresh local docker-registry pairs, medians over ROUNDS rounds. One command from a clone:
#   bench/copy-bench.sh            (env: ROUNDS=3 BIG_MB=256 FLEET_IMAGES=50 FLEET_REPOS=10
#                                   BASE_MB=20 UNIQUE_KB=512 INDEX_LAYER_MB=8 FERRY=path/to/ferry
#                                   WORKLOADS="big fleet index" KEEP=1 keeps the work dir)
set -euo pipefail

ROUNDS=${ROUNDS:-3}
BIG_MB=${BIG_MB:-256}
FLEET_IMAGES=${FLEET_IMAGES:-50}
FLEET_REPOS=${FLEET_REPOS:-10}
BASE_MB=${BASE_MB:-20}
UNIQUE_KB=${UNIQUE_KB:-512}
INDEX_LAYER_MB=${INDEX_LAYER_MB:-8}
WORKLOADS=${WORKLOADS:-big fleet index}

root=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${FERRY:-}" ]; then
  FERRY=$root/build-bench/operator/ferry
  if [ ! -x "$FERRY" ]; then
    bash "$root/scripts/install-deps.sh"
    cmake -S "$root" -B "$root/build-bench" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFERRY_TESTS=OFF >/dev/null
    cmake --build "$root/build-bench" -j2 --target ferry >/dev/null
  fi
fi
for tool in docker-registry skopeo curl python3 /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "copy-bench: $tool is required (scripts/install-deps.sh)" >&2; exit 1; }
done

work=$(mktemp -d /tmp/ferry-bench-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ -z "${KEEP:-}" ]; then rm -rf "$work"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_registry DIR [SEED_DATA]: a docker-registry on a free port with storage in DIR/data
# (hard-linked from SEED_DATA when given); sets REG_PORT and REG_PID.
start_registry() {
  local dir=$1 seed=${2:-}
  mkdir -p "$dir"
  if [ -n "$seed" ]; then cp -al "$seed" "$dir/data"; fi
  REG_PORT=$(free_port)
  cat > "$dir/config.yml" <<YAML
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $dir/data}, delete: {enabled: false}}
http: {addr: 127.0.0.1:$REG_PORT}
YAML
  docker-registry serve "$dir/config.yml" >"$dir/log" 2>&1 &
  REG_PID=$!
  pids+=("$REG_PID")
  for _ in $(seq 200); do
    curl -s -o /dev/null "http://127.0.0.1:$REG_PORT/v2/" && return 0
    sleep 0.05
  done
  echo "copy-bench: registry in $dir did not start" >&2
  exit 1
}
stop_registry() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

# ---- workloads, pushed once into seed registries
gen=$root/tests/support/oci_image.py
echo "copy-bench: generating workloads in $work (big ${BIG_MB} MiB; fleet ${FLEET_IMAGES} images/${FLEET_REPOS} repos," \
     "${BASE_MB} MiB base + ${UNIQUE_KB} KiB unique; 4-platform index, ${INDEX_LAYER_MB} MiB per platform)" >&2
[[ " $WORKLOADS " == *" big "* ]] && python3 "$gen" image "$work/oci-big" v1 --layer-bytes $((BIG_MB << 20)) --seed big >/dev/null
[[ " $WORKLOADS " == *" fleet "* ]] && python3 "$gen" image "$work/oci-fleet" img --count "$FLEET_IMAGES" \
  --base-bytes $((BASE_MB << 20)) --layer-bytes $((UNIQUE_KB << 10)) --seed fleet >/dev/null
[[ " $WORKLOADS " == *" index "* ]] && python3 "$gen" index "$work/oci-index" v1 --layer-bytes $((INDEX_LAYER_MB << 20)) --seed index >/dev/null

start_registry "$work/seed"
seed_port=$REG_PORT seed_pid=$REG_PID
push() { skopeo copy -q --all --preserve-digests --dest-tls-verify=false "oci:$1" "docker://127.0.0.1:$seed_port/$2"; }
if [ -d "$work/oci-big" ]; then push "$work/oci-big:v1" big/app:v1; fi
if [ -d "$work/oci-fleet" ]; then
  for ((i = 0; i < FLEET_IMAGES; i++)); do push "$work/oci-fleet:img$i" "team$((i % FLEET_REPOS))/svc:v$i"; done
fi
if [ -d "$work/oci-index" ]; then push "$work/oci-index:v1" multi/arch:v1; fi
stop_registry "$seed_pid"
rm -rf "$work"/oci-*
seed_data=$work/seed/data

fleet_list() {  # SRC_PORT DST_PORT
  for ((i = 0; i < FLEET_IMAGES; i++)); do
    echo "127.0.0.1:$1/team$((i % FLEET_REPOS))/svc:v$i 127.0.0.1:$2/team$((i % FLEET_REPOS))/svc:v$i"
  done
}

# raw_copy SRC_PORT DST_PORT REPO TAG: the floor — every blob streamed by curl GET | curl PUT
# (chunked, monolithic upload), in parallel, then the manifest.
raw_copy() {
  local s=$1 d=$2 repo=$3 tag=$4 accept="application/vnd.oci.image.manifest.v1+json"
  curl -sf -H "Accept: $accept" "http://127.0.0.1:$s/v2/$repo/manifests/$tag" -o "$work/raw-manifest"
  local digests
  digests=$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(" ".join([m["config"]["digest"]]+[l["digest"] for l in m["layers"]]))' "$work/raw-manifest")
  local jobs=()
  for dg in $digests; do
    (
      loc=$(curl -sf -X POST -D - -o /dev/null "http://127.0.0.1:$d/v2/$repo/blobs/uploads/" | tr -d '\r' | awk 'tolower($1)=="location:" {print $2}')
      case $loc in http*) ;; *) loc="http://127.0.0.1:$d$loc" ;; esac
      curl -sf "http://127.0.0.1:$s/v2/$repo/blobs/$dg" |
        curl -sf -X PUT -T - -H "Content-Type: application/octet-stream" -o /dev/null "$loc&digest=$dg"
    ) &
    jobs+=($!)
  done
  for j in "${jobs[@]}"; do wait "$j"; done
  curl -sf -X PUT -H "Content-Type: $accept" --data-binary "@$work/raw-manifest" -o /dev/null \
    "http://127.0.0.1:$d/v2/$repo/manifests/$tag"
}

# measure WORKLOAD TOOL: one round on a fresh registry pair; prints seconds (and records RSS for ferry).
measure() {
  local workload=$1 tool=$2 r=$work/round
  rm -rf "$r"
  start_registry "$r/src" "$seed_data"
  local sp=$REG_PORT spid=$REG_PID
  start_registry "$r/dst"
  local dp=$REG_PORT dpid=$REG_PID
  local ferry_flags="--src-insecure --dest-insecure -q"
  local sk="--src-tls-verify=false --dest-tls-verify=false --preserve-digests"
  local t0 t1 timev="$work/timev"
  t0=$(now)
  case "$workload/$tool" in
    big/ferry) /usr/bin/time -f %M -o "$timev" "$FERRY" copy $ferry_flags "127.0.0.1:$sp/big/app:v1" "127.0.0.1:$dp/big/app:v1" >/dev/null ;;
    big/skopeo) skopeo copy -q $sk "docker://127.0.0.1:$sp/big/app:v1" "docker://127.0.0.1:$dp/big/app:v1" ;;
    big/curl) raw_copy "$sp" "$dp" big/app v1 ;;
    fleet/ferry)
      fleet_list "$sp" "$dp" > "$work/list"
      /usr/bin/time -f %M -o "$timev" "$FERRY" copy $ferry_flags --from-file "$work/list" >/dev/null ;;
    fleet/skopeo-sync)
      {
        echo "127.0.0.1:$sp:"
        echo "  tls-verify: false"
        echo "  images-by-tag-regex:"
        for ((i = 0; i < FLEET_REPOS; i++)); do echo "    team$i/svc: '.*'"; done
      } > "$work/sync.yaml"
      skopeo sync --src yaml --dest docker --dest-tls-verify=false --preserve-digests "$work/sync.yaml" "127.0.0.1:$dp" >/dev/null 2>&1 ;;
    index/ferry) /usr/bin/time -f %M -o "$timev" "$FERRY" copy $ferry_flags "127.0.0.1:$sp/multi/arch:v1" "127.0.0.1:$dp/multi/arch:v1" >/dev/null ;;
    index/skopeo) skopeo copy -q --all $sk "docker://127.0.0.1:$sp/multi/arch:v1" "docker://127.0.0.1:$dp/multi/arch:v1" ;;
  esac
  t1=$(now)
  # Sanity: the copied manifest exists with the source's bytes.
  local check_repo=big/app:v1
  case $workload in fleet) check_repo=team0/svc:v0 ;; index) check_repo=multi/arch:v1 ;; esac
  local dst_check=127.0.0.1:$dp/$check_repo
  [ "$tool" = skopeo-sync ] && dst_check=127.0.0.1:$dp/svc:v0
  if ! cmp -s <(skopeo inspect --raw --tls-verify=false "docker://127.0.0.1:$sp/$check_repo") \
              <(skopeo inspect --raw --tls-verify=false "docker://$dst_check"); then
    echo "copy-bench: $workload/$tool produced a different manifest" >&2
    exit 1
  fi
  stop_registry "$spid"
  stop_registry "$dpid"
  if [[ $tool == ferry ]]; then cat "$timev" >> "$work/rss-$workload"; fi
  echo "$t0 $t1" | awk '{printf "%.3f\n", $2 - $1}'
}

declare -A med
run_workload() {
  local workload=$1; shift
  for tool in "$@"; do : > "$work/times-$workload-$tool"; done
  for ((round = 1; round <= ROUNDS; round++)); do
    for tool in "$@"; do  # interleaved, so drift hits every tool alike
      measure "$workload" "$tool" >> "$work/times-$workload-$tool"
    done
  done
  for tool in "$@"; do med[$workload/$tool]=$(median < "$work/times-$workload-$tool"); done
  echo "copy-bench: $workload done" >&2
}

want() { [[ " $WORKLOADS " == *" $1 "* ]]; }
want big && run_workload big ferry curl skopeo
want fleet && run_workload fleet ferry skopeo-sync
want index && run_workload index ferry skopeo

rss() { sort -n "$work/rss-$1" | tail -1 | awk '{printf "%.1f", $1/1024}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }

printf '\nferry copy benchmark: %d rounds, medians in seconds, %s\n' "$ROUNDS" "$(nproc) CPUs, loopback, docker-registry $(docker-registry --version | awk '{print $3}')"
printf '%-38s %9s %9s %9s  %-34s %s\n' workload ferry peer raw target result
row() {  # name ferry peer raw target-text ok-expression
  printf '%-38s %9s %9s %9s  %-34s %s\n' "$1" "$2" "$3" "$4" "$5" "$6"
}
if want big; then
b_f=${med[big/ferry]} b_s=${med[big/skopeo]} b_c=${med[big/curl]}
row "big ${BIG_MB} MiB, 1 layer (peer: skopeo)" "$b_f" "$b_s" "$b_c" "ferry <= 1.05 x raw, <= skopeo" \
  "ferry/raw=$(ratio "$b_f" "$b_c") ferry/skopeo=$(ratio "$b_f" "$b_s") rss=$(rss big)MiB (<= 64)"
fi
if want fleet; then
f_f=${med[fleet/ferry]} f_s=${med[fleet/skopeo-sync]}
row "fleet ${FLEET_IMAGES} img/${FLEET_REPOS} repos (peer: sync)" "$f_f" "$f_s" "-" "skopeo-sync/ferry >= 4" \
  "speedup=$(ratio "$f_s" "$f_f") rss=$(rss fleet)MiB"
fi
if want index; then
i_f=${med[index/ferry]} i_s=${med[index/skopeo]}
row "index 4 platforms (peer: skopeo --all)" "$i_f" "$i_s" "-" "skopeo/ferry >= 3" \
  "speedup=$(ratio "$i_s" "$i_f") rss=$(rss index)MiB"
fi
