#!/bin/bash
# Start the lab's room-header proxy in the foreground (exec).
# usage: run-kamailio.sh DIR PORT GATEWAY_HOST:PORT ROOM_HEADER
set -euo pipefail
here=$(dirname "$(readlink -f "$0")")
dir=$1 port=$2 gateway=$3 header=$4
mkdir -p "$dir/run"
sed -e "s/@PORT@/$port/g" -e "s/@GATEWAY@/$gateway/g" -e "s/@ROOM_HEADER@/$header/g" \
    "$here/room-proxy.cfg.in" > "$dir/kamailio.cfg"
exec kamailio -f "$dir/kamailio.cfg" -DD -E -w "$dir" -Y "$dir/run" -m 32 -M 8
