#!/bin/sh
# rollout.sh BUNDLE SOCKET...
#
# Rolls BUNDLE across guests, one control socket each (on one machine, or
# one per host when run by an orchestrator: see docs/rollout.md): the first
# SOCKET is the canary; then the others, one at a time. The rollout stops at
# the first guest that does not end up patched (or already patched) and
# exits with that guest's status (docs/rollout-host.sh: 3 rolled back,
# 4 busy, 5 refused, 7 unreachable); 0 when every guest is patched.
#
# Environment: as for rollout-host.sh, plus CANARY_SOAK (seconds to watch the
# canary before going on, default 0; `status --check` must then be 0).
set -u
WASM_PATCH=${WASM_PATCH:-wasm-patch}
export WASM_PATCH
CANARY_SOAK=${CANARY_SOAK:-0}
here=$(dirname "$0")

if [ $# -lt 2 ]; then
    echo "usage: $0 BUNDLE SOCKET..." >&2
    exit 2
fi
bundle=$1
shift
total=$#
done_count=0
for sock in "$@"; do
    if [ "$done_count" -eq 0 ]; then role=canary; else role=host; fi
    echo "[$((done_count + 1))/$total] $role $sock"
    "$here/rollout-host.sh" "$bundle" "$sock"
    rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "rollout STOPPED at $sock (status $rc): $done_count of $total patched, $((total - done_count - 1)) not attempted"
        exit "$rc"
    fi
    done_count=$((done_count + 1))
    if [ "$role" = canary ] && [ "$CANARY_SOAK" != 0 ]; then
        sleep "$CANARY_SOAK"
        if ! "$WASM_PATCH" status --control "$sock" --check >/dev/null; then
            echo "rollout STOPPED: the canary $sock is not settled after ${CANARY_SOAK}s"
            exit 1
        fi
    fi
done
echo "rollout complete: $done_count of $total patched"
