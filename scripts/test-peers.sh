#!/usr/bin/env bash
# Builds the test peers that Debian does not package (kube-apiserver, kubectl, etcd, helm, crane,
# regsync, regctl, distribution v3, the kstatus checker, a registry with the referrers API) at the
# versions in scripts/peers.versions, through the Go module proxy, into a cache outside the work tree. Idempotent: a peer already built
# at its pinned version is not rebuilt. The last line printed is the folder holding all of them.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck disable=SC1091
source <(sed -e 's/#.*//' -e '/^\s*$/d' -e 's/\s*$//' "$here/peers.versions")

cache=${FERRY_PEERS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ferry-peers}
bin="$cache/bin"
mkdir -p "$bin" "$cache/src"
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOTOOLCHAIN=local
GO=${GO:-go}
if ! "$GO" version >/dev/null 2>&1; then
  for g in /usr/local/go/bin/go /usr/lib/go/bin/go; do [ -x "$g" ] && GO=$g && break; done
fi
gov=$("$GO" env GOVERSION 2>/dev/null || echo none)
case "$gov" in go1.2[4-9]*|go1.[3-9]*) ;; *)
  echo "test-peers: need Go >= 1.24 (found '$gov'); Debian's golang-go is too old" >&2; exit 1 ;;
esac

log() { echo "test-peers: $*" >&2; }

# have NAME VERSION: true when $bin/NAME was built at VERSION.
have() { [ -x "$bin/$1" ] && [ "$(cat "$bin/.$1.version" 2>/dev/null)" = "$2" ]; }
mark() { echo "$2" > "$bin/.$1.version"; }

# wrapper DIR MODULE-LINES: a throwaway module in $cache/src/DIR whose go.mod is given on stdin.
wrapper() {
  local dir="$cache/src/$1"
  mkdir -p "$dir"
  cat > "$dir/go.mod"
  echo "$dir"
}

build_kubernetes() {
  local v=$KUBERNETES minor staging=(api apiextensions-apiserver apimachinery apiserver cli-runtime
    client-go cloud-provider cluster-bootstrap code-generator component-base component-helpers
    controller-manager cri-api cri-client csi-translation-lib dynamic-resource-allocation
    endpointslice externaljwt kms kube-aggregator kube-controller-manager kube-proxy kube-scheduler
    kubectl kubelet metrics mount-utils pod-security-admission sample-apiserver sample-cli-plugin
    sample-controller)
  have kube-apiserver "$v" && have kubectl "$v" && return 0
  minor=${v#v1.}; minor=${minor%%.*}
  local sv="v0.${v#v1.}" dir
  dir=$( {
    echo "module ferry.dev/peers/kubernetes"
    echo "go 1.24.0"
    echo "require k8s.io/kubernetes $v"
    for m in "${staging[@]}"; do echo "replace k8s.io/$m => k8s.io/$m $sv"; done
    echo "tool ("; echo "  k8s.io/kubernetes/cmd/kube-apiserver"; echo "  k8s.io/kubernetes/cmd/kubectl"; echo ")"
  } | wrapper "kubernetes-$v")
  log "building kube-apiserver and kubectl $v (first time: several minutes)"
  local ld="-s -w" p
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $p.gitVersion=$v -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
  (cd "$dir" && "$GO" mod tidy >/dev/null 2>&1 || "$GO" mod tidy
   "$GO" build -trimpath -tags selinux,notest -ldflags "$ld" -o "$bin/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
   "$GO" build -trimpath -tags selinux,notest -ldflags "$ld" -o "$bin/kubectl" k8s.io/kubernetes/cmd/kubectl)
  mark kube-apiserver "$v"; mark kubectl "$v"
}

build_etcd() {
  have etcd "$ETCD" && return 0
  local dir
  dir=$(printf 'module ferry.dev/peers/etcd\ngo 1.24.0\nrequire go.etcd.io/etcd/server/v3 %s\ntool go.etcd.io/etcd/server/v3\n' "$ETCD" | wrapper "etcd-$ETCD")
  log "building etcd $ETCD"
  (cd "$dir" && "$GO" mod tidy && "$GO" build -trimpath -ldflags "-s -w" -o "$bin/etcd" go.etcd.io/etcd/server/v3)
  mark etcd "$ETCD"
}

# gobuild NAME VERSION MODULE PACKAGE [LDFLAGS]: a plain module, built through a wrapper so that
# its go.sum is resolved here (go install refuses modules with replace lines).
gobuild() {
  local name=$1 v=$2 mod=$3 pkg=$4 ld=${5:-} dir
  have "$name" "$v" && return 0
  dir=$(printf 'module ferry.dev/peers/%s\ngo 1.24.0\nrequire %s %s\ntool %s\n' "$name" "$mod" "$v" "$pkg" | wrapper "$name-$v")
  log "building $name $v"
  (cd "$dir" && "$GO" mod tidy && "$GO" build -trimpath -ldflags "-s -w $ld" -o "$bin/$name" "$pkg")
  mark "$name" "$v"
}

# helm NAME MAJOR VERSION: like gobuild, with the Kubernetes version Helm assumes without a cluster
# (`.Capabilities.KubeVersion` in `helm template`, lint's deprecation checks) set from its
# client-go module, as Helm's own Makefile does; otherwise it assumes v1.20.
build_helm() {
  local name=$1 major=$2 v=$3 mod="helm.sh/helm/$2" dir kv ld
  have "$name" "$v+kube" && return 0
  dir=$(printf 'module ferry.dev/peers/%s\ngo 1.24.0\nrequire %s %s\ntool %s/cmd/helm\n' "$name" "$mod" "$v" "$mod" | wrapper "$name-$v")
  log "building $name $v"
  (cd "$dir" && "$GO" mod tidy
   kv=$("$GO" list -m -f '{{.Version}}' k8s.io/client-go)  # v0.34.1 -> Kubernetes 1.34
   kmaj=1; kmin=${kv#v0.}; kmin=${kmin%%.*}
   ld="-s -w -X $mod/internal/version.version=$v"
   for p in pkg/chartutil pkg/lint/rules; do  # helm v3; v4 reads its client-go version itself
     ld+=" -X $mod/$p.k8sVersionMajor=$kmaj -X $mod/$p.k8sVersionMinor=$kmin"
   done
   "$GO" build -trimpath -ldflags "$ld" -o "$bin/$name" "$mod/cmd/helm")
  mark "$name" "$v+kube"
}

# build_own NAME DIR: one of the project's own small Go test programs (tests/DIR); rebuilt when its
# source changes.
build_own() {
  local name=$1 src="$root/tests/$2" sum
  [ -d "$src" ] || return 0
  sum=$(cat "$src"/go.mod "$src"/go.sum "$src"/*.go | sha256sum | cut -c1-16)
  have "$name" "$sum" && return 0
  log "building tests/$2"
  (cd "$src" && "$GO" build -trimpath -o "$bin/$name" .)
  mark "$name" "$sum"
}

build_etcd
build_kubernetes
build_helm helm v3 "$HELM3"
if ! build_helm helm4 v4 "$HELM4" 2>"$cache/helm4.log"; then
  log "helm $HELM4 did not build (see $cache/helm4.log); tests use helm $HELM3"
fi
gobuild crane "$CRANE" github.com/google/go-containerregistry github.com/google/go-containerregistry/cmd/crane
gobuild regsync "$REGCLIENT" github.com/regclient/regclient github.com/regclient/regclient/cmd/regsync
gobuild regctl "$REGCLIENT" github.com/regclient/regclient github.com/regclient/regclient/cmd/regctl
gobuild registry-v3 "$DISTRIBUTION" github.com/distribution/distribution/v3 github.com/distribution/distribution/v3/cmd/registry
build_own ferry-kstatus kstatus
# go-containerregistry's registry with the OCI referrers API on (S19 tests).
build_own ferry-referrers-registry referrers-registry
# Python peers for the AWS tests (SPEC 7): boto3/botocore (the independent client and the signing
# oracle) and moto's server (ECR, SQS, STS), pinned in peers.versions, in a venv beside bin/ (pip
# from PyPI; python3-venv from install-deps.sh). Skipped when the venv already has those versions.
# bin/moto_server links to the venv's; bin/python-aws runs the venv's Python (a wrapper, since a
# venv is found from the path Python was started by).
build_aws_venv() {
  local venv="$cache/venv" want have
  [ -n "${MOTO:-}" ] || { log "peers.versions pins no MOTO; venv not checked"; return 0; }
  want=$(printf '%s\n' "boto3==$BOTO3" "botocore==$BOTOCORE" "moto==$MOTO" | sort)
  have=$("$venv/bin/python" -m pip freeze 2>/dev/null | grep -E '^(boto3|botocore|moto)==' | sort || true)
  if [ "$have" != "$want" ]; then
    log "installing moto[server]==$MOTO boto3==$BOTO3 botocore==$BOTOCORE into $venv"
    /usr/bin/python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check \
      "moto[server]==$MOTO" "boto3==$BOTO3" "botocore==$BOTOCORE" >&2
  fi
  ln -sf "$venv/bin/moto_server" "$bin/moto_server"
  printf '#!/bin/sh\nexec "%s/bin/python" "$@"\n' "$venv" > "$bin/python-aws"
  chmod +x "$bin/python-aws"
}

build_aws_venv
echo "$bin"
