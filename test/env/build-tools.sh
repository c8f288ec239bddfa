#!/usr/bin/env bash
# Builds the real Kubernetes parts the integration tests run against (kube-apiserver,
# kube-controller-manager, kubectl, etcd, helm) from the Go module proxy, and caches them outside
# the repository, keyed by version:
#
#   ${PEERTUNNEL_TOOLS_DIR:-$HOME/.cache/peertunnel/tools}/<name>-<version>/<name>
#
# Usage: test/env/build-tools.sh [--check|--probe] [kube-apiserver|kube-controller-manager|kubectl|etcd|helm|
#        kubelet|kube-scheduler|kube-proxy|ipfs ...]
# (default: the five control-plane tools; the node's kubelet, kube-scheduler and kube-proxy
# (test/env/real-node.ts) and `ipfs` (kubo, for test/interop/) only when asked for)
# On success prints one line per tool to stdout: "<name><TAB><absolute path>". Logs go to stderr.
# --check builds nothing: exit 0 when every asked-for tool is cached, 1 otherwise.
# --probe builds nothing: exit 0 when every asked-for tool is cached or could be built, 3 otherwise.
# Exit codes: 0 ok, 1 not cached (--check), 2 usage, 3 no usable Go toolchain, other: build failed.
#
# Why a script and not `go install`: k8s.io/kubernetes requires its staging modules (k8s.io/api, ...)
# at v0.0.0 and resolves them with `replace => ./staging/...`, which a dependent module does not
# inherit; etcd's root module has replace directives too. So each is built from a small wrapper
# module generated here, whose replace lines pin every staging module to the matching v0.x.y.
#
# Builds are heavy (minutes of CPU on a small machine), so: build once per version, serialise builds
# with a lock so that two test files asking at once build once, install atomically (rename), and run
# under `nice` so that other work on a shared machine stays responsive.
set -euo pipefail

# The versions. Kubernetes 1.36 builds with Go 1.26 (its go.mod says `go 1.26.0`) and has native
# sidecars (initContainers with restartPolicy: Always) GA since 1.33. etcd is the version that
# Kubernetes 1.36.5 itself pins in its go.mod; helm is the newest v3.
K8S_VERSION="${PEERTUNNEL_K8S_VERSION:-v1.36.5}"
ETCD_VERSION="${PEERTUNNEL_ETCD_VERSION:-v3.6.8}"
HELM_VERSION="${PEERTUNNEL_HELM_VERSION:-v3.22.0}"
# kubo (`ipfs`), the go-libp2p peer of test/interop/. Its go.mod replaces go-libp2p with a fork
# that the module proxy does not serve (403), so it is built from a wrapper module that requires
# the first go-libp2p release with what the fork was for (quic-go >= v0.62.0): see build_ipfs.
KUBO_VERSION="${PEERTUNNEL_KUBO_VERSION:-v0.43.1}"
KUBO_GO_LIBP2P_VERSION="${PEERTUNNEL_KUBO_GO_LIBP2P_VERSION:-v0.50.0}"

TOOLS_DIR="${PEERTUNNEL_TOOLS_DIR:-${HOME:?HOME is not set}/.cache/peertunnel/tools}"
ALL_TOOLS=(kube-apiserver kube-controller-manager kubectl etcd helm)
# A real node (test/env/real-node.ts): the scheduler binds pods to it, the kubelet runs them through
# containerd, kube-proxy makes Service IPs route. Same wrapper module and version as kube-apiserver.
NODE_TOOLS=(kubelet kube-scheduler kube-proxy)

log() { printf '[peertunnel tools %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

version_of() {
  case "$1" in
    kube-apiserver | kube-controller-manager | kubectl | kubelet | kube-scheduler | kube-proxy) echo "$K8S_VERSION" ;;
    etcd) echo "$ETCD_VERSION" ;;
    helm) echo "$HELM_VERSION" ;;
    ipfs) echo "$KUBO_VERSION" ;;
    *) return 1 ;;
  esac
}
path_of() { echo "$TOOLS_DIR/$1-$(version_of "$1")/$1"; }

check_only=0
probe_only=0
tools=()
for arg in "$@"; do
  case "$arg" in
    --check) check_only=1 ;;
    --probe) probe_only=1 ;;
    -h | --help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 0 ;;
    kube-apiserver | kube-controller-manager | kubectl | etcd | helm | ipfs) tools+=("$arg") ;;
    kubelet | kube-scheduler | kube-proxy) tools+=("$arg") ;;
    *) echo "build-tools.sh: unknown tool '$arg' (expected one of: ${ALL_TOOLS[*]} ${NODE_TOOLS[*]} ipfs)" >&2; exit 2 ;;
  esac
done
[ "${#tools[@]}" -gt 0 ] || tools=("${ALL_TOOLS[@]}")

missing() {
  local t out=()
  for t in "${tools[@]}"; do [ -x "$(path_of "$t")" ] || out+=("$t"); done
  echo "${out[*]}"
}
print_paths() {
  local t
  for t in "${tools[@]}"; do printf '%s\t%s\n' "$t" "$(path_of "$t")"; done
}

# Fast path, no lock: a warm cache costs one stat per tool.
todo="$(missing)"
if [ -z "$todo" ]; then print_paths; exit 0; fi
if [ "$check_only" = 1 ]; then log "not cached: $todo (in $TOOLS_DIR)"; exit 1; fi

# Go itself, from the module proxy (the toolchain is a module, golang.org/toolchain), for machines
# such as a fresh CI runner whose distribution Go is too old. Only with PEERTUNNEL_FETCH_GO=1: it is
# a 70 MB download that a developer should choose.
GO_FETCH_VERSION=1.26.8
fetched_go() {
  local arch v="v0.0.1-go$GO_FETCH_VERSION.linux-"
  case "$(uname -m)" in x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; *) return 1 ;; esac
  echo "$TOOLS_DIR/go-$GO_FETCH_VERSION/golang.org/toolchain@$v$arch/bin/go"
}
fetch_go() {
  local go dest zip arch
  go="$(fetched_go)" || { log "cannot fetch Go for $(uname -m)"; return 1; }
  [ -x "$go" ] && return 0
  arch="${go%/bin/go}"; arch="${arch##*.linux-}"
  dest="$TOOLS_DIR/go-$GO_FETCH_VERSION"
  mkdir -p "$TOOLS_DIR"
  exec 8>"$TOOLS_DIR/.go.lock"
  flock 8
  [ -x "$go" ] && return 0
  zip="$(mktemp "$TOOLS_DIR/.go.XXXXXX")"
  log "fetching go$GO_FETCH_VERSION from the module proxy (golang.org/toolchain)"
  curl -fsSL -o "$zip" "${GOPROXY_URL:-https://proxy.golang.org}/golang.org/toolchain/@v/v0.0.1-go$GO_FETCH_VERSION.linux-$arch.zip" &&
    rm -rf "$dest.tmp" && mkdir -p "$dest.tmp" && unzip -q "$zip" -d "$dest.tmp" || { rm -f "$zip"; return 1; }
  rm -f "$zip"
  # Module zips carry no file modes; the go command restores them the same way when it switches.
  find "$dest.tmp" \( -path '*/bin/*' -o -path '*/pkg/tool/*' \) -type f -exec chmod +x {} +
  rm -rf "$dest" && mv "$dest.tmp" "$dest"
}

GO="${GO:-$(command -v go || true)}"
if [ -z "$GO" ] && [ -x /usr/local/go/bin/go ]; then GO=/usr/local/go/bin/go; fi
go_minor=0
if [ -n "$GO" ] && "$GO" version >/dev/null 2>&1; then
  go_minor="$("$GO" env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')"
  # Kubernetes 1.36 needs Go >= 1.26. With GOTOOLCHAIN=auto a go >= 1.21 fetches it by itself.
  if [ "${go_minor:-0}" -ge 21 ] && [ "$("$GO" env GOTOOLCHAIN)" != local ]; then go_minor=99; fi
else
  GO=""
fi
if [ "${go_minor:-0}" -lt 26 ]; then
  if [ -x "$(fetched_go)" ]; then
    GO="$(fetched_go)"
  elif [ "${PEERTUNNEL_FETCH_GO:-}" = 1 ]; then
    [ "$probe_only" = 1 ] || { fetch_go && GO="$(fetched_go)"; } || { log "could not fetch Go"; exit 3; }
  else
    log "no Go >= 1.26 found (looked at \$GO, go on PATH, /usr/local/go/bin/go${GO:+; $GO is too old}): cannot build $todo." \
      "PEERTUNNEL_FETCH_GO=1 fetches Go from the module proxy."
    exit 3
  fi
fi
if [ "$probe_only" = 1 ]; then log "not cached, but buildable (Go: ${GO:-to be fetched}): $todo"; exit 0; fi

mkdir -p "$TOOLS_DIR"
exec 9>"$TOOLS_DIR/.build.lock"
if ! flock -n 9; then
  log "another process is building tools (lock $TOOLS_DIR/.build.lock); waiting for it"
  flock 9
fi
# Someone else may have built what we need while we waited.
todo="$(missing)"
if [ -z "$todo" ]; then print_paths; exit 0; fi

WORK="$(mktemp -d "$TOOLS_DIR/.build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

# Static binaries; no VCS stamping (the wrapper modules are not repositories); no go.work in play.
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOWORK=off
NICE=(nice -n 10)
# Reproducible, not the wall clock: the binaries are keyed by version and should not differ per build.
BUILD_DATE=1970-01-01T00:00:00Z

# install_dir <name> <dir containing the built binary>: atomic, so a reader never sees half a file.
install_dir() {
  local name="$1" src="$2" dest
  dest="$(dirname "$(path_of "$name")")"
  [ -x "$src/$name" ] || { log "build of $name produced no binary"; return 5; }
  rm -rf "$dest"
  mv "$src" "$dest"
  log "installed $(path_of "$name") ($(du -h "$(path_of "$name")" | cut -f1))"
}

build_k8s() {
  local want=("$@") mod="$WORK/k8s" kv="${K8S_VERSION#v}" major minor stage gomod t start
  major="${kv%%.*}"
  minor="${kv#*.}"; minor="${minor%%.*}"
  stage="v0.${minor}.${kv##*.}"
  mkdir -p "$mod"
  start=$SECONDS
  log "fetching k8s.io/kubernetes@$K8S_VERSION from the module proxy"
  # Read the staging modules from Kubernetes' own go.mod: every k8s.io/* it requires at v0.0.0.
  gomod="$(cd "$mod" && "$GO" mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^\s*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
  [ -f "$gomod" ] || { log "could not download k8s.io/kubernetes@$K8S_VERSION"; return 4; }
  {
    echo "module peertunnel.test/k8s-tools"
    echo
    echo "go 1.26.0"
    echo
    echo "godebug default=go1.26"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    grep -E '^\s+k8s\.io/[a-z0-9.-]+ v0\.0\.0(\s|$)' "$gomod" | awk -v v="$stage" '{print "\t" $1 " => " $1 " " v}' | sort -u
    echo ")"
  } >"$mod/go.mod"
  log "wrapper module pins $(grep -c '=>' "$mod/go.mod") staging modules to $stage; resolving dependencies"
  local pkgs=()
  for t in "${want[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$t@$K8S_VERSION"); done
  (cd "$mod" && "$GO" get "${pkgs[@]}")
  # The version the binaries report (/version, `kubectl version`): the operator decides on native
  # sidecars from it, so it must be the real one, not v0.0.0-master.
  local ld="-s -w" p
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=$major -X $p.gitMinor=$minor"
    ld+=" -X $p.gitTreeState=clean -X $p.buildDate=$BUILD_DATE"
  done
  for t in "${want[@]}"; do
    local out="$WORK/out-$t" s=$SECONDS
    mkdir -p "$out"
    log "building $t $K8S_VERSION (cold: several minutes on 2 cores)"
    (cd "$mod" && "${NICE[@]}" "$GO" build -trimpath -ldflags="$ld" -o "$out/$t" "k8s.io/kubernetes/cmd/$t")
    log "built $t in $((SECONDS - s))s"
    install_dir "$t" "$out"
  done
  log "kubernetes tools done in $((SECONDS - start))s"
}

build_etcd() {
  local mod="$WORK/etcd" out="$WORK/out-etcd" s=$SECONDS
  mkdir -p "$mod" "$out"
  # etcd's root module (go.etcd.io/etcd/v3) carries replace directives, so `go install` of it fails;
  # the server module's etcdmain is the same main the etcd binary runs.
  cat >"$mod/go.mod" <<EOF
module peertunnel.test/etcd-tools

go 1.26.0

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
EOF
  cat >"$mod/main.go" <<'EOF'
// Command etcd is etcd's own main, built outside etcd's repository.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
  log "building etcd $ETCD_VERSION"
  (cd "$mod" && "$GO" mod tidy && "${NICE[@]}" "$GO" build -trimpath -ldflags='-s -w' -o "$out/etcd" .)
  log "built etcd in $((SECONDS - s))s"
  install_dir etcd "$out"
}

build_helm() {
  local out="$WORK/out-helm" s=$SECONDS
  mkdir -p "$out"
  log "building helm $HELM_VERSION"
  # `go install pkg@version` builds in module mode outside any main module; helm's go.mod has no
  # replace directives, so this works as is.
  GOBIN="$out" "${NICE[@]}" "$GO" install -trimpath \
    -ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  log "built helm in $((SECONDS - s))s"
  install_dir helm "$out"
}

build_ipfs() {
  local mod="$WORK/kubo" out="$WORK/out-ipfs" s=$SECONDS
  mkdir -p "$mod" "$out"
  # `go install github.com/ipfs/kubo/cmd/ipfs@version` refuses kubo's replace directive, and the
  # fork it points at is not on the proxy; a go-libp2p release that MVS selects instead builds.
  cat >"$mod/go.mod" <<EOF
module peertunnel.test/kubo-tools

go 1.26.0

require (
	github.com/ipfs/kubo $KUBO_VERSION
	github.com/libp2p/go-libp2p $KUBO_GO_LIBP2P_VERSION
)
EOF
  cat >"$mod/tools.go" <<'EOF'
//go:build tools

// Package tools pins kubo's command for `go mod tidy`.
package tools

import _ "github.com/ipfs/kubo/cmd/ipfs"
EOF
  log "building ipfs (kubo) $KUBO_VERSION with go-libp2p $KUBO_GO_LIBP2P_VERSION"
  (cd "$mod" && "$GO" mod tidy && "${NICE[@]}" "$GO" build -trimpath -ldflags='-s -w' -o "$out/ipfs" github.com/ipfs/kubo/cmd/ipfs)
  log "built ipfs in $((SECONDS - s))s"
  install_dir ipfs "$out"
}

log "building into $TOOLS_DIR with $("$GO" env GOVERSION): $todo"
total=$SECONDS
k8s=()
for t in $todo; do
  case "$t" in kube-apiserver | kube-controller-manager | kubectl | kubelet | kube-scheduler | kube-proxy) k8s+=("$t") ;; esac
done
# etcd and helm first: they are quick, so a failure in the long Kubernetes build loses less.
for t in $todo; do
  case "$t" in etcd) build_etcd ;; helm) build_helm ;; ipfs) build_ipfs ;; esac
done
[ "${#k8s[@]}" -eq 0 ] || build_k8s "${k8s[@]}"
todo="$(missing)"
if [ -n "$todo" ]; then log "asked for but not built: $todo"; exit 5; fi
log "all done in $((SECONDS - total))s"
print_paths
