#!/usr/bin/env bash
# The test suite against the LOWEST versions pyproject.toml allows for our direct dependencies
# (uv's --resolution lowest-direct; torch stays on ci/constraints-cpu.txt's CPU build). Not part
# of .ci/run: old releases of third-party packages can break for reasons outside this repository.
# Run it before changing a lower bound. Usage: bash ci/test-lowest.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${LOWEST_VENV:-.venv-lowest}
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install -q uv
# uv reads no pip configuration: pass pip's local wheel folder on (this machine's torch +cpu wheel)
"$venv/bin/uv" pip install --python "$venv/bin/python" --resolution lowest-direct \
    ${PIP_FIND_LINKS:+--find-links "$PIP_FIND_LINKS"} -c ci/constraints-cpu.txt -e ".[testing]"
"$venv/bin/python" -m pytest "$@"
