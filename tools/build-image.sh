#!/usr/bin/env bash
# Builds the static mcpstorm binary (target/static/…/mcpstorm) and, when a Docker daemon
# answers, the FROM-scratch image of the repository's Dockerfile:
#
#   tools/build-image.sh [TAG]          # default tag mcpstorm:dev
#   docker save mcpstorm:dev | ssh node docker load    # one way to put it on each node
#
# Without a daemon it stops after the binary (and says so): the binary is the whole image.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
tag="${1:-mcpstorm:dev}"
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release \
    --target x86_64-unknown-linux-gnu --target-dir target/static
binary=target/static/x86_64-unknown-linux-gnu/release/mcpstorm
if ldd "$binary" >/dev/null 2>&1; then
    echo "build-image: $binary is not static" >&2
    exit 1
fi
echo "build-image: static binary $binary"
if docker info >/dev/null 2>&1; then
    docker build -t "$tag" .
    echo "build-image: image $tag"
else
    echo "build-image: no Docker daemon answers: image not built (the binary above is all it holds)" >&2
fi
