#!/usr/bin/env bash
# Command 3 of the README: the Dagster UI (webserver + daemon) on http://127.0.0.1:3000 over the
# same local instance and lake the demo used.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
source scripts/env.sh
exec .venv/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p "${PORT:-3000}"
