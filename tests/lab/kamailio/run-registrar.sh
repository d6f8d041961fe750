#!/bin/bash
# Start the lab's registrar / outbound proxy (registrar.cfg.in) in the foreground (exec).
# usage: run-registrar.sh DIR PORT
set -euo pipefail
here=$(dirname "$(readlink -f "$0")")
dir=$1 port=$2
mkdir -p "$dir/run"
sed -e "s/@PORT@/$port/g" "$here/registrar.cfg.in" > "$dir/kamailio.cfg"
exec kamailio -f "$dir/kamailio.cfg" -DD -E -w "$dir" -Y "$dir/run" -m 32 -M 8
