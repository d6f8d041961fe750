#!/bin/bash
# Run a command inside a private network and PID namespace:
#  * only the loopback interface exists, so no lab traffic can leave the machine whatever a
#    component is configured to do;
#  * this script is PID 1 there, so when it exits the kernel kills anything still running.
# It also fails the run if the command left processes behind: the harness must stop what it starts.
# usage: tests/lab/in-netns.sh COMMAND [ARGS...]      (as root)
set -uo pipefail
if [ -z "${LAB_NETNS:-}" ]; then
  exec env LAB_NETNS=1 unshare --net --pid --fork --mount-proc "$0" "$@"
fi
ip link set lo up
"$@"
rc=$?

# Anything other than this shell (PID 1) still alive was left running by the command.
left=()
for p in /proc/[0-9]*; do
  pid=${p#/proc/}
  [ "$pid" = 1 ] && continue
  cmd=""
  read -r -d '' cmd < "$p/cmdline" 2>/dev/null || true
  [ -n "$cmd" ] && left+=("$pid $cmd")
done
if [ ${#left[@]} -gt 0 ]; then
  echo "lab: processes left running after the command (a harness bug): " >&2
  printf '  %s\n' "${left[@]}" >&2
  [ "$rc" -eq 0 ] && rc=3
fi
exit "$rc"
