#!/bin/bash
# Install everything the lab, the demo and the tests need on a Debian 12 machine, idempotently:
# Debian packages (skipped when already present) and a pinned Python venv for the emulator.
# usage: tests/lab/install.sh          (as root; needs the Debian mirror and PyPI)
set -euo pipefail
root=$(cd "$(dirname "$(readlink -f "$0")")/../.." && pwd)

packages=(
  prosody            # real XMPP server (0.12)
  sip-tester         # SIPp (binary: sipp)
  baresip-core       # scriptable SIP phone
  kamailio           # a PBX/proxy in front of the gateway (adds the room header for baresip)
  kamailio-tls-modules   # the registrar over TLS (tests/sip_tls.rs)
  libopus-dev pkg-config   # the gateway links the system libopus
  sox libsox-fmt-all # test tones and G.711 encoding for SIPp pcaps
  tshark             # dumpcap records what a SIPp caller receives (SIPp cannot record)
  rtpengine-daemon   # the benchmark's side-by-side media peer (not the rtpengine metapackage: it builds a kernel module)
  iproute2 util-linux procps   # ip, unshare, ps/pkill for the private network namespace
  openssl            # certificates made at test time: the TLS Prosody, the TLS registrar's CA
  python3-venv
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "lab: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

venv="$root/.lab/venv"
req="$root/tools/emulator/requirements.txt"
stamp="$venv/.requirements.sha256"
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "lab: creating the Python venv in $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
  echo "$want" > "$stamp"
fi
