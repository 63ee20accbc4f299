#!/usr/bin/env bash
# Run the worker and the API together in the foreground; Ctrl-C (or SIGTERM) stops both cleanly.
set -u
cd "$(dirname "$0")/.."
bin=.venv/bin

"$bin/python" -m worker &
worker=$!
"$bin/python" -m api &
api=$!

stop() {
  trap - INT TERM
  kill -TERM "$worker" "$api" 2>/dev/null
  wait "$worker" "$api" 2>/dev/null
}
trap 'stop; exit 0' INT TERM

echo "aggregator: API on http://${AGG_HOST:-127.0.0.1}:${AGG_PORT:-8080} (docs at /docs), worker pid $worker; Ctrl-C stops both"
wait -n "$worker" "$api"
status=$?
[ "$status" -ne 0 ] && echo "aggregator: a process exited with status $status; stopping the other" >&2
stop
exit "$status"
