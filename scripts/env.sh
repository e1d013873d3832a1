#!/usr/bin/env bash
# The local profile shared by demo.sh and ui.sh: the lake folder and the Dagster instance home
# (with this repository's dagster.yaml). Both can be overridden from the environment.
export LAKE_ROOT="${LAKE_ROOT:-$PWD/lake}"
export DAGSTER_HOME="${DAGSTER_HOME:-$PWD/.dagster_home}"
mkdir -p "$DAGSTER_HOME" && cp dagster.yaml "$DAGSTER_HOME/dagster.yaml"
