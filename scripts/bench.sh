#!/bin/bash
# The load benchmark: installs what it needs (the lab's packages and rtpengine), builds the gateway
# and `loadgen` in release mode, and runs the benchmark inside a private network namespace (only
# loopback). It prints the codec floor measured on this machine, then the ramp per number of
# remote speakers and the closing table. Arguments go to loadgen (`--help` lists them).
# usage: scripts/bench.sh [loadgen options]      (as root, on Debian 12)
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."

tests/lab/install.sh
cargo build --locked --release -p jitsi-sip-gateway -p gateway-bench
tests/lab/in-netns.sh target/release/loadgen "$@"
