"""The reporting domain: reconciliation with the ledger, the write-once regulatory snapshots and their manifest, and
the exports to the file drop, with the monthly-snapshot and export jobs and schedules.

Every asset, check, job, schedule and sensor defined in this package's modules: a new table is a new module here
(plus its catalog entry), nothing to list."""

import sys

from dagster import load_definitions_from_package_module

defs = load_definitions_from_package_module(sys.modules[__package__])
