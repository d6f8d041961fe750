#!/bin/bash
# The local demo: installs what it needs, builds, and runs the lab (real Prosody, the conference
# emulator standing in for Jicofo and the videobridge) inside a private network namespace, then
# prints what each side heard.
# usage: scripts/demo.sh      (as root, on Debian 12)
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."

tests/lab/install.sh
cargo build --locked --workspace --bins
tests/lab/in-netns.sh target/debug/lab demo
