"""The real-time domain: the decision service job and the decisions topic it publishes (its supervisor sensor is in
streaming/, beside the Delta lane's).

Every asset, check, job, schedule and sensor defined in this package's modules: a new table is a new module here
(plus its catalog entry), nothing to list."""

import sys

from dagster import load_definitions_from_package_module

defs = load_definitions_from_package_module(sys.modules[__package__])
