#!/usr/bin/env bash
# A Spark standalone cluster on 127.0.0.1 from the pinned pyspark package: one master and SPARK_WORKERS
# workers, each its own JVM with SPARK_WORKER_CORES cores, whose executors start their own Python workers
# (PYSPARK_PYTHON = this repo's .venv). Point the platform at it with SPARK_MASTER=spark://127.0.0.1:<port>.
#   bash scripts/spark_cluster.sh start|stop|status
#   SPARK_CLUSTER_PORT=7077 (master), SPARK_CLUSTER_UI_PORT=8080 (master UI; the workers' UIs take free ports),
#   SPARK_WORKERS=2, SPARK_WORKER_CORES=1, SPARK_WORKER_MEMORY=2g,
#   SPARK_CLUSTER_DATA=<repo>/.spark-cluster (pid files, logs, the workers' work dirs).
# On Databricks or HDInsight the cluster is theirs: the same code runs with the session they provide (see
# README, "Running on a Spark cluster").
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PORT="${SPARK_CLUSTER_PORT:-7077}"
UI_PORT="${SPARK_CLUSTER_UI_PORT:-8080}"
WORKERS="${SPARK_WORKERS:-2}"
CORES="${SPARK_WORKER_CORES:-1}"
MEMORY="${SPARK_WORKER_MEMORY:-2g}"
DATA="${SPARK_CLUSTER_DATA:-$ROOT/.spark-cluster}"
START_TIMEOUT="${SPARK_CLUSTER_START_TIMEOUT:-90}"
PYTHON="$ROOT/.venv/bin/python"
SPARK_HOME="$("$PYTHON" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')"
export SPARK_HOME PYSPARK_PYTHON="$PYTHON" SPARK_LOG_DIR="$DATA/logs" SPARK_PID_DIR="$DATA"
MASTER_URL="spark://127.0.0.1:$PORT"

alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Start one daemon (a class and its arguments) in the background, its pid in $1 and its output in $2.
launch() {
  local pid_file="$1" log="$2"; shift 2
  nohup "$SPARK_HOME/bin/spark-class" "$@" >"$log" 2>&1 &
  echo $! >"$pid_file"
}

# The master's REST-free readiness: its UI answers and lists $1 alive workers.
workers_alive() {
  curl -s --max-time 2 "http://127.0.0.1:$UI_PORT/json/" 2>/dev/null \
    | "$PYTHON" -c 'import json, sys; print(sum(w["state"] == "ALIVE" for w in json.load(sys.stdin).get("workers", [])))' 2>/dev/null || echo 0
}

start() {
  mkdir -p "$DATA/logs"
  if alive "$DATA/master.pid"; then
    echo "spark cluster: already running at $MASTER_URL"
    return 0
  fi
  launch "$DATA/master.pid" "$DATA/logs/master.log" org.apache.spark.deploy.master.Master \
    --host 127.0.0.1 --port "$PORT" --webui-port "$UI_PORT"
  for i in $(seq 1 "$WORKERS"); do
    mkdir -p "$DATA/work-$i"
    launch "$DATA/worker-$i.pid" "$DATA/logs/worker-$i.log" org.apache.spark.deploy.worker.Worker \
      --host 127.0.0.1 --cores "$CORES" --memory "$MEMORY" --webui-port 0 --work-dir "$DATA/work-$i" "$MASTER_URL"
  done
  local waited=0
  until [[ "$(workers_alive)" -ge "$WORKERS" ]]; do
    if (( waited >= START_TIMEOUT )); then
      echo "spark cluster: $WORKERS workers not registered after ${START_TIMEOUT}s; logs in $DATA/logs" >&2
      tail -n 20 "$DATA"/logs/*.log >&2 || true
      stop
      return 1
    fi
    sleep 1; waited=$((waited + 1))
  done
  echo "spark cluster: $MASTER_URL with $WORKERS workers x $CORES core(s), $MEMORY each (UI http://127.0.0.1:$UI_PORT)"
}

stop() {
  local pid_file pid
  for pid_file in "$DATA"/worker-*.pid "$DATA/master.pid"; do
    [[ -f "$pid_file" ]] || continue
    if alive "$pid_file"; then
      pid="$(cat "$pid_file")"
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 15); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pid_file"
  done
  echo "spark cluster: stopped"
}

status() {
  if alive "$DATA/master.pid"; then
    echo "spark cluster: $MASTER_URL, $(workers_alive) worker(s) alive"
  else
    echo "spark cluster: not running"
    return 1
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
