#!/usr/bin/env bash
# A throwaway PostgreSQL server on loopback for a Dagster instance on Postgres storage (the local
# stand-in for Azure Database for PostgreSQL, used by tests/deploy and for trying deploy/azure/dagster.yaml).
#   bash scripts/postgres.sh start|stop|status|env
#   eval "$(bash scripts/postgres.sh start)"   # start (installing Debian's postgresql if missing) and export DAGSTER_PG_*
# Settings: PG_HOME=<repo>/.postgres (cluster in $PG_HOME/data, its log, socket and TLS key), PG_HOST=127.0.0.1,
# PG_PORT=55432, PG_USER=dagster, PG_PASSWORD=dagster, PG_DB=dagster, PG_BIN (the server's bin directory;
# default: the newest /usr/lib/postgresql/*/bin).
# `start` and `env` print the DAGSTER_PG_* exports on stdout (and nothing else); progress goes to stderr.
# The server only accepts TLS connections over TCP (a self-signed certificate made once), like Azure's
# managed server, so deploy/azure/dagster.yaml's sslmode=require is exercised; the superuser only connects
# through the Unix socket in $PG_HOME. Postgres refuses to run as root: as root the cluster belongs to the
# `postgres` OS user (created by the package), otherwise to the calling user.
# A second `start` of a running cluster only re-applies the role/database (well under a second); of a
# stopped one, it restarts it (no initdb).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PG_HOME="${PG_HOME:-$ROOT/.postgres}"
PG_HOST="${PG_HOST:-127.0.0.1}"
PG_PORT="${PG_PORT:-55432}"
PG_USER="${PG_USER:-dagster}"
PG_PASSWORD="${PG_PASSWORD:-dagster}"
PG_DB="${PG_DB:-dagster}"
START_TIMEOUT="${PG_START_TIMEOUT:-60}"

log() { echo "postgres: $*" >&2; }
die() { log "$*"; exit 1; }

# Root runs everything of the cluster as the package's `postgres` user; anyone else as themselves.
if [[ $EUID -eq 0 ]]; then
  OWNER=postgres
  as_owner() { runuser -u postgres -- "$@"; }
else
  OWNER="$(id -un)"
  as_owner() { "$@"; }
fi

# The server's bin directory: PG_BIN, else the newest Debian version directory, else pg_ctl on PATH.
find_bin() {
  if [[ -n "${PG_BIN:-}" ]]; then
    [[ -x "$PG_BIN/pg_ctl" ]] || die "PG_BIN=$PG_BIN has no pg_ctl"
    echo "$PG_BIN"
    return 0
  fi
  local dir
  dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
  if [[ -n "$dir" && -x "$dir/pg_ctl" && -x "$dir/initdb" ]]; then
    echo "$dir"
  elif command -v pg_ctl >/dev/null && command -v initdb >/dev/null; then
    dirname "$(command -v pg_ctl)"
  else
    return 1
  fi
}

# Debian's postgresql (server, client, the postgres OS user), once. The package's post-install would
# create and (under systemd) start a `main` cluster on 5432 that nothing here uses: a createcluster.d
# drop-in tells postgresql-common not to create it. apt waits for a lock held by another install.
install_postgres() {
  find_bin >/dev/null && return 0
  local sudo=()
  if [[ $EUID -ne 0 ]]; then
    command -v sudo >/dev/null || die "postgresql is not installed and installing it needs root or sudo"
    sudo=(sudo)
  fi
  log "installing Debian's postgresql package (once)"
  "${sudo[@]}" mkdir -p /etc/postgresql-common/createcluster.d
  echo "create_main_cluster = false" | "${sudo[@]}" tee /etc/postgresql-common/createcluster.d/50-no-main-cluster.conf >/dev/null
  local apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -q)
  if ! "${apt[@]}" install -y --no-install-recommends postgresql openssl >&2; then
    "${apt[@]}" update >&2
    "${apt[@]}" install -y --no-install-recommends postgresql openssl >&2
  fi
  find_bin >/dev/null || die "postgresql was installed but no pg_ctl/initdb was found; set PG_BIN"
}

# Absolute paths (the server's command line and postmaster.pid must not depend on the caller's cwd).
# Only start creates PG_HOME.
if [[ "${1:-}" == start ]]; then mkdir -p "$PG_HOME"; fi
[[ -d "$PG_HOME" ]] && PG_HOME="$(cd "$PG_HOME" && pwd)"
DATA="$PG_HOME/data"
LOG="$PG_HOME/postgres.log"
SOCKET_DIR="$PG_HOME"   # the superuser's way in (peer authentication), readable by the owner only
# The owner's commands run from a directory it can enter (as root, the caller's cwd may be /root).
cd "$PG_HOME" 2>/dev/null || cd /

# The cluster's files belong to OWNER, who must be able to reach PG_HOME (e.g. not under a root-only
# directory such as pytest's /tmp/pytest-of-root).
prepare_home() {
  [[ $EUID -eq 0 ]] && chown "$OWNER": "$PG_HOME" && chmod 700 "$PG_HOME"
  as_owner test -w "$PG_HOME" || die "the $OWNER OS user cannot write to $PG_HOME (a parent directory is closed to it?): choose another PG_HOME"
  # Unix socket paths are limited to 107 bytes
  ((${#SOCKET_DIR} + 20 < 107)) || die "PG_HOME=$PG_HOME is too long for a Unix socket path: choose a shorter one"
}

# initdb once, a self-signed certificate for TLS, and client authentication: the superuser only through
# the socket (peer), everyone else only over TLS with a password (no plain TCP entry, so a non-TLS
# connection is refused).
init_cluster() {
  [[ -f "$DATA/PG_VERSION" ]] && return 0
  log "initialising a cluster in $DATA"
  rm -rf "$DATA"
  as_owner "$BIN/initdb" -D "$DATA" -E UTF8 --locale=C.UTF-8 --auth-local=peer --auth-host=scram-sha-256 >"$PG_HOME/initdb.log" 2>&1 \
    || { tail -n 20 "$PG_HOME/initdb.log" >&2; die "initdb failed"; }
  as_owner openssl req -new -x509 -days 3650 -nodes -subj "/CN=$PG_HOST" \
    -keyout "$DATA/server.key" -out "$DATA/server.crt" >/dev/null 2>&1 || die "could not create a TLS certificate with openssl"
  as_owner chmod 600 "$DATA/server.key"
  as_owner tee "$DATA/pg_hba.conf" >/dev/null <<'EOF'
# TYPE   DATABASE USER ADDRESS      METHOD
local    all      all               peer
hostssl  all      all  127.0.0.1/32 scram-sha-256
hostssl  all      all  ::1/128      scram-sha-256
EOF
}

# postmaster.pid line 4 is the port of the running server.
running_port() {
  [[ -f "$DATA/postmaster.pid" ]] && as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1 || return 1
  sed -n 4p "$DATA/postmaster.pid"
}

port_taken() {
  (exec 3<>"/dev/tcp/$PG_HOST/$1") 2>/dev/null
}

# The server settings are passed on each start, so a changed PG_PORT/PG_HOST takes effect on the next
# start. Small buffers and few connections: a test server on a busy machine.
start_server() {
  local port
  if port="$(running_port)"; then
    [[ "$port" == "$PG_PORT" ]] || die "the cluster in $DATA is already running on port $port, not $PG_PORT: stop it first"
    log "already running on $PG_HOST:$PG_PORT ($DATA)"
    return 0
  fi
  port_taken "$PG_PORT" && die "$PG_HOST:$PG_PORT is already in use (not by the cluster in $DATA)"
  as_owner "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t "$START_TIMEOUT" start -o \
    "-c listen_addresses='$PG_HOST' -p $PG_PORT -c unix_socket_directories='$SOCKET_DIR' -c ssl=on -c max_connections=50 -c shared_buffers=32MB -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    >/dev/null 2>&1 || { tail -n 30 "$LOG" >&2; die "the server did not start"; }
  log "listening on $PG_HOST:$PG_PORT ($DATA)"
}

# The application role and database (idempotent; re-sets the password, so a changed PG_PASSWORD applies).
# psql variables quote the names and the password.
ensure_database() {
  as_owner "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCKET_DIR" -p "$PG_PORT" -d postgres \
    -v user="$PG_USER" -v password="$PG_PASSWORD" -v db="$PG_DB" >/dev/null <<'EOF' || die "creating role $PG_USER / database $PG_DB failed"
SELECT format('CREATE ROLE %I LOGIN', :'user') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'user') \gexec
ALTER ROLE :"user" WITH LOGIN PASSWORD :'password';
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'user') WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
EOF
}

print_env() {
  printf 'export DAGSTER_PG_HOST=%q\n' "$PG_HOST"
  printf 'export DAGSTER_PG_PORT=%q\n' "$PG_PORT"
  printf 'export DAGSTER_PG_USERNAME=%q\n' "$PG_USER"
  printf 'export DAGSTER_PG_PASSWORD=%q\n' "$PG_PASSWORD"
  printf 'export DAGSTER_PG_DB=%q\n' "$PG_DB"
}

start() {
  install_postgres
  BIN="$(find_bin)"
  prepare_home
  init_cluster
  start_server
  ensure_database
  print_env
}

stop() {
  if ! BIN="$(find_bin)" || ! running_port >/dev/null; then
    log "not running"
    return 0
  fi
  as_owner "$BIN/pg_ctl" -D "$DATA" -m fast -w -t 30 stop >/dev/null 2>&1 \
    || as_owner "$BIN/pg_ctl" -D "$DATA" -m immediate -w stop >/dev/null 2>&1 || die "could not stop the server in $DATA"
  log "stopped"
}

status() {
  local port
  if BIN="$(find_bin)" && port="$(running_port)"; then
    log "running on $PG_HOST:$port ($DATA)"
  else
    log "not running"
    return 1
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  env) print_env ;;
  *) echo "usage: bash scripts/postgres.sh start|stop|status|env" >&2; exit 2 ;;
esac
