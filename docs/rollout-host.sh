#!/bin/sh
# rollout-host.sh BUNDLE SOCKET
#
# Applies BUNDLE to the guest serving the control socket SOCKET (one host of
# a rollout) and branches on `wasm-patch apply`'s exit status:
#
#   0  patched                       -> exit 0
#   6  already applied (a re-run)    -> exit 0
#   4  busy: another transition      -> retry, RETRIES times, RETRY_DELAY apart
#   3  timed out and rolled back     -> exit 3 (the blockers are printed)
#   5  refused: wrong module, policy, missing base... -> exit 5, never retried
#   7  no control server             -> exit 7
#   *  anything else                 -> that status
#
# Prints one line `RESULT SOCKET DETAIL`, RESULT being patched,
# already-applied, busy, rolled-back, refused, unreachable or error; DETAIL is
# apply's JSON reply (on failure) or the patch.
#
# Environment: WASM_PATCH (the binary, default `wasm-patch`), TIMEOUT (apply
# --timeout in seconds, default 60), RETRIES (default 5), RETRY_DELAY
# (seconds, default 10).
set -u
WASM_PATCH=${WASM_PATCH:-wasm-patch}
TIMEOUT=${TIMEOUT:-60}
RETRIES=${RETRIES:-5}
RETRY_DELAY=${RETRY_DELAY:-10}

if [ $# -ne 2 ]; then
    echo "usage: $0 BUNDLE SOCKET" >&2
    exit 2
fi
bundle=$1
sock=$2

try=1
while :; do
    reply=$("$WASM_PATCH" apply --control "$sock" "$bundle" --timeout "$TIMEOUT" --json 2>/dev/null)
    rc=$?
    case $rc in
        0) echo "patched $sock $reply"; exit 0 ;;
        6) echo "already-applied $sock $reply"; exit 0 ;;
        4)
            if [ "$try" -ge "$RETRIES" ]; then
                echo "busy $sock still busy after $try tries: $reply"
                exit 4
            fi
            try=$((try + 1))
            sleep "$RETRY_DELAY"
            ;;
        3) echo "rolled-back $sock $reply"; exit 3 ;;
        5) echo "refused $sock $reply"; exit 5 ;;
        7) echo "unreachable $sock $reply"; exit 7 ;;
        *) echo "error $sock $reply"; exit "$rc" ;;
    esac
done
