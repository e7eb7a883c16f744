#!/usr/bin/env bash
# Install the pinned official MCP Python SDK (the real-peer client/server used by mcpstorm's
# interop tests) into a private venv. Idempotent: a stamp file records the hash of
# requirements.txt plus the interpreter version; when it matches, nothing is reinstalled.
#
#   tools/peers/setup-python.sh            # venv at <repo>/target/peers/venv
#   MCPSTORM_VENV=/some/dir tools/peers/setup-python.sh
#   MCPSTORM_PYTHON=python3.12 tools/peers/setup-python.sh   # choose the base interpreter
#
# The last line printed on stdout is the venv's python path (everything else goes to stderr),
# so callers can do:  PY=$(tools/peers/setup-python.sh | tail -n1)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${MCPSTORM_VENV:-$repo/target/peers/venv}"
req="$here/requirements.txt"
base_python="${MCPSTORM_PYTHON:-python3}"
stamp="$venv/.mcpstorm-requirements.stamp"

log() { printf 'setup-python: %s\n' "$*" >&2; }

command -v "$base_python" >/dev/null 2>&1 || {
    log "error: '$base_python' not found on PATH (need Python >= 3.10)"
    exit 1
}
"$base_python" - <<'EOF' || { log "error: $base_python is too old (mcp 2.x needs Python >= 3.10)"; exit 1; }
import sys
sys.exit(0 if sys.version_info >= (3, 10) else 1)
EOF

py_version="$("$base_python" -c 'import sys; print(sys.version.split()[0])')"
want_hash="$( { cat "$req"; echo "python=$py_version"; } | sha256sum | cut -d' ' -f1)"
vpy="$venv/bin/python"

if [[ -x "$vpy" && -f "$stamp" && "$(cat "$stamp")" == "$want_hash" ]] && "$vpy" -c 'import mcp' >/dev/null 2>&1; then
    log "up to date: $venv (python $py_version)"
    echo "$vpy"
    exit 0
fi

make_venv() { "$base_python" -m venv --clear "$venv" >&2; }

# A venv that does not run (interpreter moved or upgraded) or lacks pip is rebuilt from scratch.
if [[ ! -x "$vpy" ]] || ! "$vpy" -m pip --version >/dev/null 2>&1; then
    log "creating venv at $venv with $base_python ($py_version)"
    mkdir -p "$(dirname "$venv")"
    if ! make_venv; then
        # Debian/Ubuntu system pythons ship venv/ensurepip separately.
        if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
            log "venv creation failed; installing python3-venv via apt-get"
            apt-get update -qq >&2 || true
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
            make_venv
        else
            log "error: '$base_python -m venv' failed (on Debian/Ubuntu: apt-get install python3-venv)"
            exit 1
        fi
    fi
fi

rm -f "$stamp"
log "installing pinned requirements from $req"
PIP_DISABLE_PIP_VERSION_CHECK=1 "$vpy" -m pip install --quiet --no-input -r "$req" >&2
# Sanity: the SDK imports with the 2.x API the peer scripts use.
"$vpy" - >&2 <<'EOF'
import importlib.metadata as md
from mcp import ClientSession  # noqa: F401
from mcp.client.streamable_http import streamable_http_client  # noqa: F401
from mcp.server import MCPServer  # noqa: F401
print("setup-python: mcp", md.version("mcp"), "ok")
EOF
echo "$want_hash" > "$stamp"
echo "$vpy"
