"""The streaming domain: the Delta lane (transaction_stream job, its stream_batches table) and the supervisor sensors
that keep it and the decision service running.

Every asset, check, job, schedule and sensor defined in this package's modules: a new table is a new module here
(plus its catalog entry), nothing to list."""

import sys

from dagster import load_definitions_from_package_module

defs = load_definitions_from_package_module(sys.modules[__package__])
