#!/usr/bin/env bash
# Builds Ferry's OCI image without a container engine: a Release `ferry`, the shared libraries it
# links (as ldd resolves them on this Debian 12 machine), the CA bundle, a non-root user 65532,
# packed into an OCI image layout with umoci. The Dockerfile describes the same image (its
# runtime packages are those libraries' packages); the chart's image.repository/tag point at it.
#
#   scripts/build-image.sh [--layout DIR] [--tag TAG] [--push REF] [--ferry BINARY]
#
#   --layout DIR   where the OCI image layout goes (default build-image/oci)
#   --tag TAG      its tag (default: the version `ferry --version` prints)
#   --push REF     then push it with `ferry copy oci:DIR:TAG REF` (e.g. 127.0.0.1:5000/ferry:0.1.0;
#                  extra `ferry copy` flags after --, e.g. -- --dest-authfile FILE)
#   --ferry PATH   package this binary instead of building build-image/release/operator/ferry
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
layout=$root/build-image/oci
tag=""
push=""
ferry=""
copy_flags=()
while [ $# -gt 0 ]; do
  case "$1" in
    --layout) layout=$2; shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    --push) push=$2; shift 2 ;;
    --ferry) ferry=$2; shift 2 ;;
    --) shift; copy_flags=("$@"); break ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "build-image: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
for tool in umoci ldd; do
  command -v "$tool" >/dev/null || { echo "build-image: $tool is required (bash scripts/install-deps.sh)" >&2; exit 1; }
done

if [ -z "$ferry" ]; then
  bash "$root/scripts/install-deps.sh"
  out=$root/build-image/release
  export CCACHE_BASEDIR=$root CCACHE_NOHASHDIR=1
  [ -f "$out/build.ninja" ] || cmake -S "$root" -B "$out" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFERRY_TESTS=OFF >/dev/null
  cmake --build "$out" --target ferry -j "${FERRY_JOBS:-$(nproc)}" >/dev/null
  ferry=$out/operator/ferry
fi
[ -x "$ferry" ] || { echo "build-image: no ferry binary at $ferry" >&2; exit 1; }
if ldd "$ferry" | grep -q libasan; then
  echo "build-image: $ferry is a sanitizer build; package a Release build" >&2
  exit 1
fi
version=$("$ferry" --version | awk '{print $2}')
tag=${tag:-$version}

work=$(mktemp -d "${TMPDIR:-/tmp}/ferry-image.XXXXXX")
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs
mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc/ssl/certs" "$rootfs/tmp"
chmod 1777 "$rootfs/tmp"
install -m 0755 "$ferry" "$rootfs/usr/local/bin/ferry"
strip "$rootfs/usr/local/bin/ferry" 2>/dev/null || true
# Every shared library the binary loads, at the path the dynamic loader finds it (plus the loader).
# Debian 12 merges /usr: /lib and /lib64 are links to usr/lib and usr/lib64, kept as links here,
# so that the loader's path (/lib64/ld-linux-x86-64.so.2) and every library path ldd prints resolve.
for d in lib lib64; do
  if [ -L "/$d" ]; then
    mkdir -p "$rootfs/$(readlink "/$d")"
    ln -s "$(readlink "/$d")" "$rootfs/$d"
  fi
done
ldd "$ferry" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u | while read -r lib; do
  real=$(readlink -f "$(dirname "$lib")")/$(basename "$lib")   # through the /lib links
  mkdir -p "$rootfs$(dirname "$real")"
  cp -L "$lib" "$rootfs$real"
done
cp -L /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$rootfs/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' > "$rootfs/etc/group"
printf 'hosts: files dns\n' > "$rootfs/etc/nsswitch.conf"
mkdir -p "$rootfs/home/nonroot" && chown 65532:65532 "$rootfs/home/nonroot" 2>/dev/null || true

rm -rf "$layout"
mkdir -p "$(dirname "$layout")"
umoci init --layout "$layout"
umoci new --image "$layout:$tag"
umoci unpack --rootless --image "$layout:$tag" "$work/bundle" >/dev/null
cp -a "$rootfs/." "$work/bundle/rootfs/"
umoci repack --image "$layout:$tag" "$work/bundle"
umoci config --image "$layout:$tag" \
  --config.user 65532:65532 \
  --config.entrypoint /usr/local/bin/ferry --config.cmd operator \
  --config.env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
  --config.label org.opencontainers.image.title=ferry \
  --config.label "org.opencontainers.image.version=$version" \
  --config.label org.opencontainers.image.source=https://github.com/ferry-dev/ferry \
  --os linux --architecture amd64
umoci gc --layout "$layout"
size=$(du -sb "$layout/blobs" | awk '{print $1}')
echo "build-image: $layout:$tag ($size bytes of blobs)"

if [ -n "$push" ]; then
  "$ferry" copy "${copy_flags[@]}" "oci:$layout:$tag" "$push"
fi
