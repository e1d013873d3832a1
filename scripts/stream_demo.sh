#!/usr/bin/env bash
# Both streaming lanes for a minute, on the demo's lake (run `bash scripts/demo.sh` first): starts a local
# broker, the decision service and the Delta lane, publishes a minute of traffic at 1,200 events/s and prints
# event-to-decision and event-to-gold latencies (bench/streaming.py with a short sustained phase, no ramp).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
exec .venv/bin/python bench/streaming.py --duration 60 --ramp "" --state-accounts 20000 "$@"
