#!/usr/bin/env bash
# Lint, format and type checks; CI fails on any finding. Usage: bash ci/lint.sh [python]
# (python: the interpreter of the environment with the ".[testing]" extras; default: python3)
set -euo pipefail
cd "$(dirname "$0")/.."
py=${1:-python3}
"$py" -m ruff check .
"$py" -m ruff format --check .
"$py" -m mypy
echo "lint: ruff and mypy clean"
