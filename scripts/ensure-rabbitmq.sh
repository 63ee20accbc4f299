#!/usr/bin/env bash
# Make sure a RabbitMQ answers at the URL given (default: AGG_AMQP_URL or the local default).
# Where none answers and the URL is local: install rabbitmq-server if missing (Debian, as root),
# start it with `rabbitmq-server -detached` and wait until it completes an AMQP handshake.
set -euo pipefail
cd "$(dirname "$0")/.."

url=${1:-${AGG_AMQP_URL:-amqp://guest:guest@localhost:5672/}}
python=${PYTHON:-python3}
probe() { "$python" scripts/amqp_probe.py "$url"; }

if probe; then
  echo "broker: RabbitMQ answers at $("$python" scripts/amqp_probe.py --where "$url")"
  exit 0
fi

# With several nodes (a comma list), only a local first node is this script's to start.
host=$("$python" -c 'import sys; from urllib.parse import urlsplit; print(urlsplit(sys.argv[1].split(",")[0]).hostname or "localhost")' "$url")
case "$host" in
  localhost|127.0.0.1|::1) ;;
  *) echo "broker: nothing answers at $host and it is not this machine: start it, or point AGG_AMQP_URL elsewhere" >&2
     exit 1 ;;
esac

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }

if ! command -v rabbitmq-server >/dev/null && [ ! -x /usr/sbin/rabbitmq-server ]; then
  if command -v apt-get >/dev/null; then
    echo "broker: installing rabbitmq-server (apt-get)"
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q rabbitmq-server
  else
    echo "broker: RabbitMQ is not installed and this is not a Debian-like machine;" \
         "install RabbitMQ or set AGG_AMQP_URL to a broker that runs" >&2
    exit 1
  fi
fi

# The package may have started it already (where an init system runs).
if ! probe; then
  echo "broker: starting rabbitmq-server -detached"
  as_root env PATH="$PATH:/usr/sbin" rabbitmq-server -detached || true
fi

for _ in $(seq 1 120); do
  if probe; then
    echo "broker: RabbitMQ is up"
    # This script installed or started it, so it is ours to set up: the management UI is how
    # operators watch the queues (http://localhost:15672, guest/guest on a local install).
    if as_root env PATH="$PATH:/usr/sbin" rabbitmq-plugins enable rabbitmq_management >/dev/null 2>&1; then
      echo "broker: management UI enabled on http://localhost:15672"
    else
      echo "broker: could not enable the management UI (rabbitmq-plugins enable rabbitmq_management)" >&2
    fi
    exit 0
  fi
  sleep 1
done
echo "broker: RabbitMQ did not answer within 120 s; see /var/log/rabbitmq/" >&2
exit 1
