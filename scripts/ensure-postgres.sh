#!/usr/bin/env bash
# Make sure the tests will have a PostgreSQL (tests/support/postgres.py chooses it).
# If one answers at the URL given (default: AGG_TEST_PG_URL, else the local default), that is it.
# Else the tests make a throwaway cluster of their own with the machine's PostgreSQL binaries:
# install Debian's postgresql package where they are missing (as root), telling it not to create
# a cluster of its own. No server is started here, and no system service.
set -euo pipefail
cd "$(dirname "$0")/.."

explicit=${1:-${AGG_TEST_PG_URL:-}}
url=${explicit:-postgresql://postgres@127.0.0.1:5432/postgres}
python=${PYTHON:-python3}
shown=$("$python" -c 'import sys; from scripts.pg_probe import describe; print(describe(sys.argv[1]))' "$url")

if why=$("$python" scripts/pg_probe.py "$url" 2>&1); then
  echo "postgres: a PostgreSQL answers at $shown"
  exit 0
fi
if [ -n "$explicit" ]; then
  echo "$why" >&2
  echo "postgres: AGG_TEST_PG_URL is set and nothing answers there: start that server, or unset it" >&2
  exit 1
fi

# The same places the test helper looks: Debian's per-version directories, then PATH.
binaries() {
  local dir initdb
  initdb=$(command -v initdb || true)
  for dir in /usr/lib/postgresql/*/bin ${initdb:+"$(dirname "$(readlink -f "$initdb")")"}; do
    if [ -x "$dir/initdb" ] && [ -x "$dir/postgres" ]; then
      echo "$dir"
      return 0
    fi
  done
  return 1
}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }

if ! binaries >/dev/null; then
  if command -v apt-get >/dev/null; then
    echo "postgres: installing Debian's postgresql package (apt-get), without a cluster of its own"
    # Read by the package's set-up (createcluster.conf includes this directory): no "main"
    # cluster, so nothing to start. The tests make and remove their own clusters.
    as_root mkdir -p /etc/postgresql-common/createcluster.d
    echo "create_main_cluster = false" |
      as_root tee /etc/postgresql-common/createcluster.d/agg-tests-no-main-cluster.conf >/dev/null
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql
  else
    echo "postgres: no PostgreSQL answers at $shown, its binaries are not installed and this is" \
         "not a Debian-like machine; install PostgreSQL or set AGG_TEST_PG_URL" >&2
    exit 1
  fi
fi

if ! dir=$(binaries); then
  echo "postgres: the postgresql package is installed but initdb and postgres were not found" >&2
  exit 1
fi
echo "postgres: nothing answers at $shown; the tests run a throwaway cluster with $dir"
