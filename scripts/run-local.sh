#!/usr/bin/env bash
# `make run`: a first look at Aegis, then the control plane on its embedded defaults
# (SQLite in var/, in-process cache and rate limits) with the example policies loaded.
# Local secrets are generated once into .env.local (ignored by git), never a built-in
# default; the first run creates an administrator and prints its password once.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
PORT="${AEGIS_PORT:-8000}"

"$BIN/python" examples/show_decisions.py

[ -f .env.local ] || "$BIN/aegis" secrets --env-file .env.local
set -a
# shellcheck disable=SC1091
. ./.env.local
set +a

mkdir -p var
first_run=0
[ -f var/aegis.db ] || first_run=1
"$BIN/aegis" db upgrade
if [ "$first_run" = 1 ]; then
    echo "Creating the administrator admin@localhost.dev (the password is shown once):"
    "$BIN/aegis" admin create --email admin@localhost.dev --generate-password
fi
# Existing documents are left alone, so this is safe on every run.
"$BIN/aegis" policies import examples/policies

echo "Aegis control plane: http://127.0.0.1:${PORT}/api/v1/health  (Ctrl-C stops it)"
exec "$BIN/aegis" serve --host 127.0.0.1 --port "$PORT"
