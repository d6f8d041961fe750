#!/bin/bash
# Start the lab's registrar listening on TLS too (registrar-tls.cfg.in around registrar.cfg.in)
# in the foreground (exec). DIR/certs must hold registrar.crt and registrar.key.
# usage: run-registrar-tls.sh DIR PORT TLS_PORT
set -euo pipefail
here=$(dirname "$(readlink -f "$0")")
dir=$(readlink -f "$1") port=$2 tls_port=$3
mkdir -p "$dir/run"
sed -e "s/@PORT@/$port/g" "$here/registrar.cfg.in" > "$dir/registrar.cfg"
sed -e "s/@TLS_PORT@/$tls_port/g" -e "s|@DIR@|$dir|g" "$here/registrar-tls.cfg.in" > "$dir/kamailio.cfg"
# TLS takes more shared memory than the plain registrar's 32 MB.
exec kamailio -f "$dir/kamailio.cfg" -DD -E -w "$dir" -Y "$dir/run" -m 64 -M 8
