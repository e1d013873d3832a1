"""The operations domain: the operations audit trail, lake compaction (job, schedule, log) and the notifications
sensor that sends failed checks and runs to the operations webhook (with its delivery log).

Every asset, check, job, schedule and sensor defined in this package's modules: a new table is a new module here
(plus its catalog entry), nothing to list."""

import sys

from dagster import load_definitions_from_package_module

defs = load_definitions_from_package_module(sys.modules[__package__])
