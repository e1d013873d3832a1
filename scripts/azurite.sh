#!/usr/bin/env bash
# Azurite 3.37.0 (the Azure Storage emulator, npm package `azurite`), Blob service only, on 127.0.0.1:
# the stand-in for Azure Blob Storage in the tests of the file drops and the Delta exports. There is
# no Docker here; npm is the ordinary way in. Azurite has no DFS (ADLS Gen2) endpoint: abfss:// and
# Spark's ABFS driver cannot be tested against it.
#   bash scripts/azurite.sh start|stop|status
#   AZURITE_BLOB_PORT=10000,
#   AZURITE_DATA=<repo>/.azurite (blob data, pid file, azurite.log),
#   AZURITE_HOME=$HOME/.cache/compliance-platform/azurite-3.37.0 (the npm install, once; outside the
#   work tree like Kafka's jars, so fresh clones, e.g. CI's, reuse it).
# The account is Azurite's well-known development account `devstoreaccount1`, so the blob endpoint is
# http://127.0.0.1:$AZURITE_BLOB_PORT/devstoreaccount1.
set -euo pipefail

AZURITE_VERSION=3.37.0
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
AZURITE_BLOB_PORT="${AZURITE_BLOB_PORT:-10000}"
AZURITE_DATA="${AZURITE_DATA:-$ROOT/.azurite}"
AZURITE_HOME="${AZURITE_HOME:-$HOME/.cache/compliance-platform/azurite-$AZURITE_VERSION}"
START_TIMEOUT="${AZURITE_START_TIMEOUT:-60}"   # seconds for the blob endpoint to answer
STOP_TIMEOUT=10    # seconds between TERM and KILL

# Absolute paths: the server's command line (how stop/status recognise it) must not depend on the
# caller's cwd. Only start creates the data dir; without one nothing can be running.
if [[ "${1:-}" == start || -d "$AZURITE_DATA" ]]; then
  mkdir -p "$AZURITE_DATA"
  AZURITE_DATA="$(cd "$AZURITE_DATA" && pwd)"
fi
AZURITE_HOME="$(realpath -m "$AZURITE_HOME")"
MAIN_JS="$AZURITE_HOME/node_modules/azurite/dist/src/blob/main.js"
PID_FILE="$AZURITE_DATA/azurite.pid"
LOG="$AZURITE_DATA/azurite.log"

# True if the pid is our Azurite, alive (checked against its command line, so neither a recycled pid of
# another process nor a zombie, whose cmdline is empty, counts).
is_azurite() {
  [[ -r "/proc/$1/cmdline" ]] && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF -- "$MAIN_JS --blobHost 127.0.0.1 --blobPort $AZURITE_BLOB_PORT --location $AZURITE_DATA/blob "
}

running_pid() {
  [[ -f "$PID_FILE" ]] || return 1
  local pid
  pid="$(cat "$PID_FILE")"
  [[ "$pid" =~ ^[0-9]+$ ]] && is_azurite "$pid" || return 1
  echo "$pid"
}

# The npm package, installed once into a staging folder beside AZURITE_HOME and renamed into place, so an
# interrupted install never looks complete. npm warns that Azurite 3.37 declares node >= 22; it runs on
# Debian's node 20 for the Blob features used here (checked by the tests).
install() {
  if [[ -f "$AZURITE_HOME/node_modules/azurite/package.json" ]]; then
    grep -q "\"version\": \"$AZURITE_VERSION\"" "$AZURITE_HOME/node_modules/azurite/package.json" && return 0
    echo "azurite: $AZURITE_HOME holds another azurite version; remove it and retry" >&2
    exit 1
  fi
  command -v npm >/dev/null 2>&1 || { echo "azurite: npm is required (apt-get install npm)" >&2; exit 1; }
  echo "azurite: installing azurite@$AZURITE_VERSION from npm into $AZURITE_HOME (once)"
  mkdir -p "$(dirname "$AZURITE_HOME")"
  staging="$(mktemp -d "$(dirname "$AZURITE_HOME")/.azurite.XXXXXX")"
  # Removed on any exit, including a failed install (after a good mv it is gone).
  trap 'rm -rf "${staging:-}"' EXIT
  if ! npm install --prefix "$staging" --no-audit --no-fund --no-save --loglevel=error "azurite@$AZURITE_VERSION" >"$staging/npm.log" 2>&1; then
    cat "$staging/npm.log" >&2
    echo "azurite: npm install failed" >&2
    exit 1
  fi
  # mv -T refuses to replace a non-empty directory: if a concurrent start won the race, keep its copy.
  rm -f "$staging/npm.log"
  mv -T "$staging" "$AZURITE_HOME" 2>/dev/null || [[ -f "$AZURITE_HOME/node_modules/azurite/package.json" ]]
}

port_taken() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# True once the blob endpoint answers HTTP as Azurite (any status: an unauthenticated request gets 403).
answers() {
  curl -s -o /dev/null -D - --max-time 2 "http://127.0.0.1:$AZURITE_BLOB_PORT/devstoreaccount1?comp=list" 2>/dev/null \
    | grep -qi '^server: Azurite-Blob'
}

start() {
  local pid
  if pid="$(running_pid)"; then
    echo "azurite: already running (pid $pid) on http://127.0.0.1:$AZURITE_BLOB_PORT/devstoreaccount1"
    return 0
  fi
  if port_taken "$AZURITE_BLOB_PORT"; then
    echo "azurite: 127.0.0.1:$AZURITE_BLOB_PORT is already in use (not by the Azurite of $AZURITE_DATA)" >&2
    exit 1
  fi
  command -v node >/dev/null 2>&1 || { echo "azurite: node is required (apt-get install nodejs npm)" >&2; exit 1; }
  command -v curl >/dev/null 2>&1 || { echo "azurite: curl is required for the readiness probe" >&2; exit 1; }
  install
  mkdir -p "$AZURITE_DATA/blob"
  # --skipApiVersionCheck: azure-storage-blob 12.31 sends an API version newer than Azurite 3.37 knows.
  # --loose: ignore headers Azurite does not support instead of failing the request.
  # --disableTelemetry: Azurite reports usage to Microsoft by default; with no way out, the pending
  # telemetry kept the process alive after SIGTERM had closed the server.
  # nohup + stdin from /dev/null: the server outlives this script and does not hold the caller's pipes.
  nohup node "$MAIN_JS" --blobHost 127.0.0.1 --blobPort "$AZURITE_BLOB_PORT" --location "$AZURITE_DATA/blob" \
    --skipApiVersionCheck --loose --silent --disableTelemetry >>"$LOG" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$PID_FILE"
  local deadline=$((SECONDS + START_TIMEOUT))
  until answers; do
    if ! is_azurite "$pid"; then
      echo "azurite: exited during startup; tail of $LOG:" >&2
      tail -n 40 "$LOG" >&2
      rm -f "$PID_FILE"
      exit 1
    fi
    if ((SECONDS >= deadline)); then
      echo "azurite: not answering on 127.0.0.1:$AZURITE_BLOB_PORT after ${START_TIMEOUT}s; tail of $LOG:" >&2
      tail -n 40 "$LOG" >&2
      stop >&2
      exit 1
    fi
    sleep 0.2
  done
  echo "azurite: listening on http://127.0.0.1:$AZURITE_BLOB_PORT/devstoreaccount1"
}

stop() {
  local pid
  if ! pid="$(running_pid)"; then
    echo "azurite: not running"
    rm -f "$PID_FILE"
    return 0
  fi
  kill -TERM "$pid"
  local deadline=$((SECONDS + STOP_TIMEOUT))
  while is_azurite "$pid" && ((SECONDS < deadline)); do sleep 0.2; done
  if is_azurite "$pid"; then
    echo "azurite: no exit ${STOP_TIMEOUT}s after TERM, sending KILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
    while is_azurite "$pid"; do sleep 0.2; done
  fi
  rm -f "$PID_FILE"
  echo "azurite: stopped"
}

status() {
  local pid
  if pid="$(running_pid)"; then
    echo "azurite: running (pid $pid) on http://127.0.0.1:$AZURITE_BLOB_PORT/devstoreaccount1"
  else
    echo "azurite: not running"
    return 1
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: bash scripts/azurite.sh start|stop|status" >&2; exit 2 ;;
esac
