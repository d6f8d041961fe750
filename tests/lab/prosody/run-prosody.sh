#!/bin/bash
# Start a private lab Prosody in the foreground (exec), from an instance folder of its own.
# usage: run-prosody.sh DIR C2S_PORT COMPONENT_PORT [DOMAIN]
#   env FOCUS_PASSWORD (focuspass), JIGASI_PASSWORD (jigasipass), COMPONENT_SECRET (focussecret)
# Creates DIR/prosody.cfg.lua, registers focus@ and jigasi@auth.DOMAIN, then execs Prosody, so the
# caller's PID is Prosody's PID. Listens on 127.0.0.1 only.
set -euo pipefail
here=$(dirname "$(readlink -f "$0")")
dir=$1 c2s=$2 comp=$3 domain=${4:-meet.jitsi}
mkdir -p "$dir/data" "$dir/certs"
cd "$dir"
sed -e "s/@C2S_PORT@/$c2s/g" -e "s/@COMPONENT_PORT@/$comp/g" -e "s/@DOMAIN@/$domain/g" \
    -e "s/@COMPONENT_SECRET@/${COMPONENT_SECRET:-focussecret}/g" \
    "$here/prosody.cfg.lua.in" > prosody.cfg.lua
prosodyctl --config ./prosody.cfg.lua register focus "auth.$domain" "${FOCUS_PASSWORD:-focuspass}"
prosodyctl --config ./prosody.cfg.lua register jigasi "auth.$domain" "${JIGASI_PASSWORD:-jigasipass}"
exec prosody --config ./prosody.cfg.lua -F
