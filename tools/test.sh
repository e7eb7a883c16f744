#!/usr/bin/env bash
# The project's one test command (README "Run all tests"; CI's .ci/run calls exactly this).
# Installs what the tests need (the pinned MCP Python SDK venv, the pinned conformance suite,
# the pinned TypeScript SDK),
# then: rustfmt check, clippy
# with warnings as errors, and every test: unit, proptest, integration, real peers.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

echo "== install test peers (pinned MCP Python SDK venv under target/peers)"
MCPSTORM_PEER_PYTHON="$(bash tools/peers/setup-python.sh | tail -n 1)"
export MCPSTORM_PEER_PYTHON
echo "   python: $MCPSTORM_PEER_PYTHON"
echo "== install the pinned MCP conformance suite and its Node 22 (target/peers/conformance)"
MCPSTORM_CONFORMANCE_DIR="$(bash tools/peers/setup-conformance.sh | tail -n 1)"
export MCPSTORM_CONFORMANCE_DIR
echo "== install the pinned MCP TypeScript SDK (target/peers/ts-sdk)"
MCPSTORM_TS_PEER_DIR="$(bash tools/peers/setup-ts.sh | tail -n 1)"
export MCPSTORM_TS_PEER_DIR

echo "== install nftables and iptables (the network faults' tests: tests/faults.rs)"
for tool in nft:nftables iptables:iptables; do
    if ! command -v "${tool%%:*}" >/dev/null 2>&1; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${tool##*:}" >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${tool##*:}" >/dev/null; }
    fi
done

echo "== install Slurm and munge (the multi-node engine of tests/engines.rs)"
if ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null; }
fi

echo "== cargo fmt --check"
cargo fmt --check

echo "== shellcheck kernel-tuning/*.sh tools/*.sh"
if ! command -v shellcheck >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q shellcheck >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q shellcheck >/dev/null; }
fi
shellcheck kernel-tuning/*.sh tools/*.sh tools/peers/*.sh tests/engines/*.sh .ci/run

echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

echo "== cargo test (lib, binaries, integration and peer tests, doc tests)"
cargo test
