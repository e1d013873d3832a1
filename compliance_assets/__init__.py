"""Compliance & anomaly-detection asset graph: the Dagster assets, checks and jobs of the platform."""

import warnings

from dagster import BetaWarning, PreviewWarning

# Partitioned asset checks and backfill policies are used on purpose; don't repeat it on every load.
warnings.filterwarnings("ignore", category=BetaWarning)
warnings.filterwarnings("ignore", category=PreviewWarning)
