#!/usr/bin/env bash
# Install nginx (Debian package), the real TLS terminator / bearer check the reach tests put in
# front of the official Python SDK server. Idempotent; prints the nginx binary's path last.
set -euo pipefail
if ! command -v nginx >/dev/null 2>&1; then
    if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
        echo "setup-nginx: nginx is missing; install the Debian package nginx (needs root)" >&2
        exit 1
    fi
    echo "setup-nginx: installing nginx via apt-get" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx >/dev/null; }
fi
# The package starts a system-wide nginx on port 80; the tests run their own instances.
if command -v systemctl >/dev/null 2>&1; then systemctl stop nginx >/dev/null 2>&1 || true; fi
command -v nginx
