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

api_url="http://${AGG_HOST:-127.0.0.1}:${AGG_PORT:-8080}"
metrics_port=${AGG_METRICS_PORT:-9101}
cat <<EOF
aggregator: running (worker pid $worker, API pid $api); Ctrl-C stops both
  the page          $api_url/
  API docs          $api_url/docs
  API metrics       $api_url/metrics
  worker metrics    http://127.0.0.1:$metrics_port/metrics
  RabbitMQ UI       http://localhost:15672  (guest/guest on a local install)
  try it            .venv/bin/python -m producer --count 1000
EOF
wait -n "$worker" "$api"
status=$?
[ "$status" -ne 0 ] && echo "aggregator: a process exited with status $status; stopping the other" >&2
stop
exit "$status"
