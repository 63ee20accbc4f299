#!/usr/bin/env bash
# Secrets for `docker compose up`, made once: .env (RabbitMQ's user, password and Erlang cookie,
# PostgreSQL's password) and deploy/api-keys.toml (one API key with every scope; its token in
# deploy/api-token.txt).
# Files that exist are left alone, so running it again rotates nothing. To rotate, delete the
# file and run it again (see "Security" in README.md). All three files are git-ignored.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}

random_hex() { "$python" -c 'import secrets, sys; print(secrets.token_hex(int(sys.argv[1])))' "$1"; }

if [ ! -f .env ]; then
  umask 077
  cat > .env <<ENV
# Made by scripts/compose-env.sh; docker compose reads it. Never commit it.
RABBITMQ_USER=aggregator
RABBITMQ_PASSWORD=$(random_hex 24)
RABBITMQ_ERLANG_COOKIE=$(random_hex 24)
# Used by docker-compose.postgres.yml.
POSTGRES_PASSWORD=$(random_hex 24)
ENV
  echo "compose-env: wrote .env (RabbitMQ user aggregator, a random password and cookie)"
fi

if [ ! -f deploy/api-keys.toml ]; then
  umask 077
  token=$(random_hex 32)
  digest=$(printf %s "$token" | "$python" -c 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')
  cat > deploy/api-keys.toml <<KEYS
# API keys (api/keys.py): one [[key]] per client. sha256 is the hex SHA-256 of the token:
#   printf %s "\$TOKEN" | sha256sum
# The API re-reads this file when it changes, or on SIGHUP.
[[key]]
name = "admin"
sha256 = "$digest"
scopes = ["publish", "read", "admin"]
topics = ["#"]
KEYS
  printf '%s\n' "$token" > deploy/api-token.txt
  # The API runs as uid 10001 in its container and must read the keys file.
  chmod 644 deploy/api-keys.toml
  echo "compose-env: wrote deploy/api-keys.toml; the token of key 'admin' is in deploy/api-token.txt"
fi
