"""Monitoring: model drift, champion-challenger shadow scoring and comparison, and the SLO view."""
