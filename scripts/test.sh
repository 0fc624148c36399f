#!/usr/bin/env bash
# The test command: set up a fresh Debian machine if needed, lint, run every test (and list
# the 15 slowest: CI has a 30-minute guide).
# With CI=true, tests whose component (Docker, PostgreSQL) is missing fail instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -m pytest -ra --durations=15 "$@"
