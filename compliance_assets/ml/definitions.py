"""The model domain: outcomes, training features, the MLflow model, gold scores, anomaly alerts and the model audit
trail, their checks, and the scoring, training, promotion and rollback jobs.

Every asset, check, job, schedule and sensor defined in this package's modules: a new table is a new module here
(plus its catalog entry), nothing to list."""

import sys

from dagster import load_definitions_from_package_module

defs = load_definitions_from_package_module(sys.modules[__package__])
