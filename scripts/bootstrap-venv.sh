#!/usr/bin/env bash
# Create the virtualenv; on a fresh Debian, install python3-venv first where it is missing.
set -euo pipefail
python=${1:-python3}
venv=${2:-.venv}
[ -x "$venv/bin/python" ] && exit 0
if ! "$python" -m venv "$venv" 2>/dev/null; then
  rm -rf "$venv"
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "venv: installing python3-venv (apt-get)"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv python3-pip
  else
    echo "venv: '$python -m venv' failed; install python3-venv (sudo apt-get install python3-venv)" >&2
    exit 1
  fi
  "$python" -m venv "$venv"
fi
"$venv/bin/pip" install -q --disable-pip-version-check --upgrade pip
