#!/usr/bin/env bash
# Command 3 of the README: the Dagster UI (webserver + daemon) on http://127.0.0.1:3000 over the
# same local instance and lake the demo used.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
export LAKE_ROOT="${LAKE_ROOT:-$PWD/lake}"
export DAGSTER_HOME="${DAGSTER_HOME:-$PWD/.dagster_home}"
mkdir -p "$DAGSTER_HOME" && cp dagster.yaml "$DAGSTER_HOME/dagster.yaml"
exec .venv/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p "${PORT:-3000}"
