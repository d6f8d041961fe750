#!/bin/bash
# Runs every test of the project on this machine, from a clean clone: installs the Debian and
# Python packages the tests need, builds, checks formatting and lints, then runs the whole suite
# (unit tests, the emulator's own tests, and the lab tests against real Prosody, SIPp and baresip)
# inside a private network namespace where only loopback exists.
# usage: scripts/test.sh [extra cargo-nextest filters]     (as root, on Debian 12)
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."

tests/lab/install.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# Build everything while the network is reachable; the tests then run offline.
cargo build --workspace --all-targets --locked
tests/lab/in-netns.sh bash -c '
  set -e
  .lab/venv/bin/python -m unittest discover -s tools/emulator/tests
  if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --offline --locked --no-fail-fast "$@"
  else
    cargo test --workspace --offline --locked --no-fail-fast "$@"
  fi
' lab-tests "$@"
