#!/usr/bin/env bash
# Builds the container images a real node runs (test/env/real-node.ts), here, from local inputs only:
# no registry is reachable from a test machine, so nothing is ever pulled.
#
#   pause       registry.k8s.io/pause:3.10.2  Kubernetes' own build/pause/linux/pause.c, static
#   debian      localhost/debian-minbase:bookworm  debootstrap --variant=minbase (the others' base)
#   node-base   docker.io/library/node:24-slim  debian + the pinned Node of node_modules + npm: the
#               Dockerfile's `FROM`, so the Dockerfile builds unmodified with --pull-never
#   peertunnel  localhost/peertunnel:<hash>  the repository's Dockerfile, with buildah
#   redis       docker.io/library/redis:7  debian + Debian's redis-server and redis-tools
#
# Usage: test/env/build-images.sh [--check] [pause|node-base|peertunnel|redis ...] (default: all but debian)
# Prints one line per image: "<name><TAB><reference><TAB><docker-archive path>"; logs go to stderr.
# --check builds nothing: exit 0 when every asked-for image is cached, 1 otherwise.
#
# Each image is cached by content: its key is a hash of its inputs (this script, the base image's
# key, the source files, the Node binary, package versions), so an unchanged input never rebuilds
# and a changed one always does. Archives live in ${PEERTUNNEL_IMAGES_DIR:-$HOME/.cache/peertunnel/images}
# as <name>-<key>.tar (docker-archive: `ctr images import` reads it); buildah's own storage is
# private to that directory (never /var/lib/containers). Builds take a lock, like build-tools.sh.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
SELF="$ROOT/test/env/build-images.sh"
IMAGES_DIR="${PEERTUNNEL_IMAGES_DIR:-${HOME:?HOME is not set}/.cache/peertunnel/images}"
K8S_VERSION="${PEERTUNNEL_K8S_VERSION:-v1.36.5}"
SUITE=bookworm
MIRROR="${PEERTUNNEL_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# npm itself (the Node package ships no npm), pinned.
NPM_VERSION="${PEERTUNNEL_NPM_VERSION:-11.19.1}"
PAUSE_REF=registry.k8s.io/pause:3.10.2
DEBIAN_REF=localhost/debian-minbase:$SUITE
NODE_REF=docker.io/library/node:24-slim
REDIS_REF=docker.io/library/redis:7
ALL=(pause node-base peertunnel redis)

log() { printf '[peertunnel images %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
sha() { sha256sum | cut -c1-16; }

check_only=0
want=()
for arg in "$@"; do
  case "$arg" in
    --check) check_only=1 ;;
    -h | --help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 0 ;;
    pause | debian | node-base | peertunnel | redis) want+=("$arg") ;;
    *) echo "build-images.sh: unknown image '$arg' (expected one of: ${ALL[*]} debian)" >&2; exit 2 ;;
  esac
done
[ "${#want[@]}" -gt 0 ] || want=("${ALL[@]}")

NODE_BIN="$ROOT/node_modules/node/bin/node"
[ -x "$NODE_BIN" ] || { log "no $NODE_BIN: run npm ci first"; exit 2; }

# --- keys: hashes of every input, computed without building anything ------------------------------
script_key="$(sha <"$SELF")"
pause_c() { echo "$(go env GOMODCACHE 2>/dev/null || echo "$HOME/go/pkg/mod")/k8s.io/kubernetes@$K8S_VERSION/build/pause/linux/pause.c"; }
key_pause() { { echo "$script_key"; cat "$(pause_c)"; gcc --version | head -1; } | sha; }
key_debian() { { echo "$script_key $SUITE $MIRROR"; } | sha; }
# The Node binary's own bytes are hashed once and remembered by size and mtime (126 MB otherwise
# read on every test start).
node_sum() {
  local stamp memo
  stamp="$(stat -c '%s-%Y' "$(readlink -f "$NODE_BIN")")"
  memo="$IMAGES_DIR/.node-sum-$stamp"
  [ -f "$memo" ] || { mkdir -p "$IMAGES_DIR"; sha256sum <"$NODE_BIN" | cut -c1-64 >"$memo"; }
  cat "$memo"
}
key_node_base() { { key_debian; node_sum; echo "$NPM_VERSION"; } | sha; }
# Exactly what the Dockerfile copies (see .dockerignore), by content, in a stable order.
context_files() {
  (cd "$ROOT" && find package.json package-lock.json tsconfig.json tsconfig.build.json bin sidecar operator crds \
    -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
}
key_peertunnel() { { key_node_base; cat "$ROOT/Dockerfile" "$ROOT/.dockerignore"; context_files; } | sha; }
redis_version() { apt-cache policy redis-server 2>/dev/null | sed -n 's/^ *Candidate: //p'; }
key_redis() { { key_debian; redis_version; } | sha; }

ref_of() {
  case "$1" in
    pause) echo "$PAUSE_REF" ;;
    debian) echo "$DEBIAN_REF" ;;
    node-base) echo "$NODE_REF" ;;
    peertunnel) echo "localhost/peertunnel:$(key_peertunnel)" ;;
    redis) echo "$REDIS_REF" ;;
  esac
}
archive_of() { echo "$IMAGES_DIR/$1-$(key_"${1//-/_}").tar"; }

missing() {
  local i out=()
  for i in "${want[@]}"; do [ -f "$(archive_of "$i")" ] || out+=("$i"); done
  echo "${out[*]}"
}
print_paths() {
  local i
  for i in "${want[@]}"; do printf '%s\t%s\t%s\n' "$i" "$(ref_of "$i")" "$(archive_of "$i")"; done
}

todo="$(missing)"
if [ -z "$todo" ]; then print_paths; exit 0; fi
if [ "$check_only" = 1 ]; then log "not cached: $todo (in $IMAGES_DIR)"; exit 1; fi
[ "$(id -u)" = 0 ] || { log "building images needs root (buildah, debootstrap)"; exit 3; }
for t in buildah debootstrap gcc; do
  command -v "$t" >/dev/null || { log "missing $t (Debian packages buildah, debootstrap, gcc)"; exit 3; }
done

mkdir -p "$IMAGES_DIR"
exec 9>"$IMAGES_DIR/.build.lock"
if ! flock -n 9; then
  log "another process is building images (lock $IMAGES_DIR/.build.lock); waiting for it"
  flock 9
fi
todo="$(missing)"
if [ -z "$todo" ]; then print_paths; exit 0; fi

WORK="$(mktemp -d "$IMAGES_DIR/.build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
STORE=(--root "$IMAGES_DIR/storage" --runroot "$WORK/runroot" --storage-driver overlay)
NICE=(nice -n 10)
# --network host: buildah's default network would add a bridge, turn on ip_forward and add
# iptables chains on the host. --isolation chroot: no new namespaces needed for RUN steps.
BUD=(buildah "${STORE[@]}" bud --pull-never --network host --isolation chroot --layers=false --format docker)

# bud <ref> <context dir> [buildah bud args...]: builds, then writes the archive of <ref>.
bud() {
  local ref="$1" ctx="$2" name="$3"
  shift 3
  local out
  out="$(archive_of "$name")"
  (cd "$ctx" && "${NICE[@]}" "${BUD[@]}" -t "$ref" "$@" . >&2)
  rm -f "$WORK/out.tar"
  buildah "${STORE[@]}" push -q "$ref" "docker-archive:$WORK/out.tar:$ref" >&2
  rm -f "$IMAGES_DIR/$name"-*.tar
  mv "$WORK/out.tar" "$out"
  log "built $name ($ref): $(du -h "$out" | cut -f1)"
}

# A base the next build starts FROM: in buildah's storage when this key built it (a newer key's
# build moves the tag and removes the older archive), else loaded from its archive, else built.
ensure_base() {
  local name="$1" archive
  archive="$(archive_of "$name")"
  if [ -f "$archive" ]; then
    buildah "${STORE[@]}" inspect --type image "$(ref_of "$name")" >/dev/null 2>&1 ||
      buildah "${STORE[@]}" pull -q "docker-archive:$archive" >/dev/null
    return 0
  fi
  "build_${name//-/_}"
}

build_pause() {
  local ctx="$WORK/pause" s=$SECONDS
  mkdir -p "$ctx"
  [ -f "$(pause_c)" ] || { log "no $(pause_c): build-tools.sh kubelet downloads k8s.io/kubernetes"; return 4; }
  gcc -Os -Wall -Werror -static -DVERSION="${PAUSE_REF##*:}-peertunnel" -o "$ctx/pause" "$(pause_c)"
  strip "$ctx/pause"
  printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' >"$ctx/Containerfile"
  bud "$PAUSE_REF" "$ctx" pause -f Containerfile
  log "pause in $((SECONDS - s))s"
}

build_debian() {
  local ctx="$WORK/debian" s=$SECONDS
  mkdir -p "$ctx"
  log "debootstrap --variant=minbase $SUITE (about a minute)"
  "${NICE[@]}" debootstrap --variant=minbase "$SUITE" "$ctx/rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
    { tail -20 "$WORK/debootstrap.log" >&2; return 4; }
  # What an image does not need: apt lists, caches, docs, logs of the bootstrap itself.
  rm -rf "$ctx/rootfs"/var/lib/apt/lists/* "$ctx/rootfs"/var/cache/apt/* "$ctx/rootfs"/usr/share/doc/* \
    "$ctx/rootfs"/usr/share/man/* "$ctx/rootfs"/usr/share/locale/* "$ctx/rootfs"/var/log/* "$ctx/rootfs"/debootstrap
  tar -C "$ctx/rootfs" --numeric-owner -cf "$ctx/rootfs.tar" .
  rm -rf "$ctx/rootfs"
  printf 'FROM scratch\nADD rootfs.tar /\nCMD ["bash"]\n' >"$ctx/Containerfile"
  bud "$DEBIAN_REF" "$ctx" debian -f Containerfile
  log "debian in $((SECONDS - s))s"
}

build_node_base() {
  local ctx="$WORK/node-base" s=$SECONDS
  ensure_base debian
  mkdir -p "$ctx"
  cp "$NODE_BIN" "$ctx/node"
  # npm's release tarball bundles its dependencies; fetched once by version.
  local tgz="$IMAGES_DIR/dl/npm-$NPM_VERSION.tgz"
  if [ ! -f "$tgz" ]; then
    mkdir -p "$IMAGES_DIR/dl"
    (cd "$WORK" && npm pack -q "npm@$NPM_VERSION" >/dev/null && mv "npm-$NPM_VERSION.tgz" "$tgz")
  fi
  mkdir -p "$ctx/npm" && tar -C "$ctx/npm" --strip-components=1 -xzf "$tgz"
  cat >"$ctx/Containerfile" <<EOF
FROM $DEBIAN_REF
COPY node /usr/local/bin/node
COPY npm /usr/local/lib/node_modules/npm
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm && \\
    ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx && \\
    node --version && npm --version
CMD ["node"]
EOF
  bud "$NODE_REF" "$ctx" node-base -f Containerfile
  log "node-base in $((SECONDS - s))s"
}

build_peertunnel() {
  local s=$SECONDS vols=()
  ensure_base node-base
  # A machine whose npm trusts an extra CA (a TLS-inspecting proxy: npm config `cafile`) needs it in
  # the build's `RUN npm ci` too: mounted for the build only, never in a layer.
  # Which npm answers depends on PATH (Node 24's npm under `npm test` reads another global npmrc),
  # so a CA that Node trusts through NODE_EXTRA_CA_CERTS is the fallback.
  local cafile
  cafile="$(npm config get cafile 2>/dev/null || true)"
  if { [ -z "$cafile" ] || [ "$cafile" = null ]; } && [ -n "${NODE_EXTRA_CA_CERTS:-}" ]; then
    cafile="$NODE_EXTRA_CA_CERTS"
  fi
  if [ -n "$cafile" ] && [ "$cafile" != null ] && [ -f "$cafile" ]; then
    printf 'cafile=/run/peertunnel-build/ca.crt\n' >"$WORK/npmrc"
    vols+=(-v "$cafile:/run/peertunnel-build/ca.crt:ro" -v "$WORK/npmrc:/usr/local/etc/npmrc:ro")
  fi
  bud "$(ref_of peertunnel)" "$ROOT" peertunnel -f Dockerfile "${vols[@]}"
  log "peertunnel in $((SECONDS - s))s"
}

build_redis() {
  local ctx="$WORK/redis" s=$SECONDS
  ensure_base debian
  mkdir -p "$ctx"
  # As in a Docker Hub redis image: persistence off by default is the pod's choice, not the image's;
  # the redis user is uid/gid 999 (what a pod's runAsUser names under PodSecurity restricted).
  cat >"$ctx/Containerfile" <<EOF
FROM $DEBIAN_REF
RUN groupadd -r -g 999 redis && useradd -r -g redis -u 999 -d /data redis && \\
    apt-get update -qq && apt-get install -y -qq --no-install-recommends redis-server redis-tools >/dev/null && \\
    rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/* /usr/share/doc/* && \\
    mkdir -p /data && chown redis:redis /data
WORKDIR /data
EXPOSE 6379
CMD ["redis-server", "--protected-mode", "no"]
EOF
  bud "$REDIS_REF" "$ctx" redis -f Containerfile
  log "redis in $((SECONDS - s))s"
}

log "building into $IMAGES_DIR: $todo"
total=$SECONDS
for i in $todo; do
  [ -f "$(archive_of "$i")" ] || "build_${i//-/_}"
done
# Images of old keys: only the archives matter; the storage keeps layers a rebuild reuses.
buildah "${STORE[@]}" rmi --prune >/dev/null 2>&1 || true
todo="$(missing)"
if [ -n "$todo" ]; then log "asked for but not built: $todo"; exit 5; fi
log "all done in $((SECONDS - total))s"
print_paths
