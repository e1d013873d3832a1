"""The ingest domain: reference data, bronze, silver (with the DLQ and dq_results), the ledger's file drop, their
checks, the daily_ingest job and the sensors that start it when a delivery lands.

Every asset, check, job, schedule and sensor defined in this package's modules: a new table is a new module here
(plus its catalog entry), nothing to list."""

import sys

from dagster import load_definitions_from_package_module

defs = load_definitions_from_package_module(sys.modules[__package__])
