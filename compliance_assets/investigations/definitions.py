"""The investigations domain: investigators' decisions on alerts, alert precision, and the hand-off of HIGH alerts to
case management (its delivery log and the sensor that posts them).

Every asset, check, job, schedule and sensor defined in this package's modules: a new table is a new module here
(plus its catalog entry), nothing to list."""

import sys

from dagster import load_definitions_from_package_module

defs = load_definitions_from_package_module(sys.modules[__package__])
