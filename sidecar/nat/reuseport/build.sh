#!/bin/sh
# Builds the reuse-port Node-API addon into dist/sidecar/nat/reuseport/reuseport.node.
#
# Nothing is downloaded: the system C compiler compiles against Node-API headers found locally
# (node-gyp would fetch headers). Node-API symbols resolve when Node loads the addon, so it links
# with -shared -fPIC and no libnode (hence no `-z defs`). One build loads in every Node version.
#
# A missing compiler or headers is a warning, not a failure: at run time the transport then uses
# net.BoundSocket (Node >= 24.19) or plain dials. PEERTUNNEL_REQUIRE_ADDON=1 makes it a failure.
#
# Environment: CC (default cc), NODE_API_HEADERS_DIR (a directory holding node_api.h).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
out_dir="$root/dist/sidecar/nat/reuseport"
out="$out_dir/reuseport.node"
cc=${CC:-cc}

fail() {
  if [ "${PEERTUNNEL_REQUIRE_ADDON:-0}" = "1" ]; then
    echo "reuseport addon: $1" >&2
    exit 1
  fi
  echo "reuseport addon: WARNING: $1; not built (hole punching needs Node >= 24.19 then)" >&2
  exit 0
}

headers=""
node_prefix=""
if command -v node >/dev/null 2>&1; then
  node_prefix=$(node -p 'require("path").resolve(process.execPath, "../..")' 2>/dev/null || true)
fi
for dir in "${NODE_API_HEADERS_DIR:-}" "$root/node_modules/node-api-headers/include" \
  "${node_prefix:+$node_prefix/include/node}" /usr/include/node /usr/local/include/node; do
  if [ -n "$dir" ] && [ -f "$dir/node_api.h" ]; then
    headers=$dir
    break
  fi
done
[ -n "$headers" ] || fail "no node_api.h found (set NODE_API_HEADERS_DIR, or install node-api-headers or the nodejs headers)"
command -v "$cc" >/dev/null 2>&1 || fail "no C compiler ($cc)"

mkdir -p "$out_dir"
"$cc" -std=c11 -O2 -Wall -Wextra -fPIC -shared -fvisibility=hidden \
  -I"$headers" -o "$out.tmp" "$here/reuseport.c" || fail "compile failed"
mv "$out.tmp" "$out"
echo "reuseport addon: built $out (headers: $headers)"
