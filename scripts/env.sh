#!/usr/bin/env bash
# The local profile shared by demo.sh and ui.sh: the lake folder, the Dagster instance home and MLflow
# (with this repository's dagster.yaml). Both can be overridden from the environment.
export LAKE_ROOT="${LAKE_ROOT:-$PWD/lake}"
export DAGSTER_HOME="${DAGSTER_HOME:-$PWD/.dagster_home}"
mkdir -p "$DAGSTER_HOME" && cp dagster.yaml "$DAGSTER_HOME/dagster.yaml"
export MLFLOW_HOME="${MLFLOW_HOME:-$PWD/mlruns}"
export MLFLOW_TRACKING_URI="${MLFLOW_TRACKING_URI:-sqlite:///$MLFLOW_HOME/mlflow.db}"
export MLFLOW_ARTIFACT_ROOT="${MLFLOW_ARTIFACT_ROOT:-$MLFLOW_HOME/artifacts}"
mkdir -p "$MLFLOW_HOME"
