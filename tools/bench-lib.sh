#!/usr/bin/env bash
# Shared by the tools/bench-*.sh benchmarks (sourced, not run): install a Debian package a
# benchmark needs, and print the machine beside the figures.

install_if_missing() { # command package
    command -v "$1" >/dev/null 2>&1 && return 0
    if [[ $(id -u) -ne 0 ]]; then
        echo "$(basename "$0"): $1 is missing; install the Debian package $2 (needs root)" >&2
        exit 2
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" >/dev/null
}

print_machine() {
    echo "== machine"
    echo "date:      $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "commit:    $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (dirty)')"
    echo "cpu:       $(nproc) × $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
    echo "kernel:    $(uname -r)"
    echo "nofile:    soft $(ulimit -Sn) hard $(ulimit -Hn)"
    echo "wrk:       $(wrk -v 2>&1 | head -n1)"
    echo "h2load:    $(h2load --version 2>&1 | head -n1)"
}
