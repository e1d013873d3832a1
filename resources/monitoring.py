"""Monitoring thresholds and SLOs: one resource read by the drift, champion-challenger and SLO assets and
their checks, so an operator changes a threshold in one place (environment variables, or resource
config in the deployment). The reconciliation deadline (T+1 06:00 UTC) is the reconciliation's own."""

import os

from dagster import ConfigurableResource
from pydantic import Field


class MonitoringResource(ConfigurableResource):
    """Warn / fail thresholds of the monitoring checks and the case study's SLOs."""

    psi_warn: float = Field(default=0.10, description="Population stability index per feature at which drift is a warning (DRIFT_PSI_WARN).")
    psi_fail: float = Field(default=0.25, description="PSI at which drift fails the check (DRIFT_PSI_FAIL).")
    band_psi_warn: float = Field(default=0.10, description="PSI of the risk-band distribution vs the model's calibration that warns (DRIFT_BAND_PSI_WARN).")
    band_psi_fail: float = Field(default=0.25, description="Band PSI that fails (DRIFT_BAND_PSI_FAIL).")
    dlq_rate_warn: float = Field(default=0.02, description="Share of a delivery's records sent to the DLQ that warns (DRIFT_DLQ_RATE_WARN).")
    dlq_rate_fail: float = Field(default=0.05, description="DLQ share that fails (DRIFT_DLQ_RATE_FAIL).")
    dq_pass_rate_warn: float = Field(default=0.99, description="Lowest per-rule pass rate (all rules) below which the drift check warns (DRIFT_DQ_PASS_WARN).")
    dq_pass_rate_fail: float = Field(default=0.95, description="Lowest per-rule pass rate below which it fails (DRIFT_DQ_PASS_FAIL).")
    drift_reference_rows: int = Field(default=200_000, description="Training rows sampled (deterministically) as the PSI reference.")
    challenger_share: float = Field(default=1.0, description="Share of each day's transactions also scored by the challenger (CHALLENGER_SHARE; 1 = all).")
    challenger_min_agreement: float = Field(default=0.90, description="Lowest band agreement with the champion for the comparison to pass (CHALLENGER_MIN_AGREEMENT).")
    challenger_max_recall_drop: float = Field(default=0.05, description="How much lower the challenger's recall on known outcomes may be (CHALLENGER_MAX_RECALL_DROP).")
    challenger_max_alert_ratio: float = Field(default=1.5, description="Most HIGH-band rows the challenger may raise, relative to the champion (CHALLENGER_MAX_ALERT_RATIO).")
    slo_latency_p95_seconds: float = Field(default=60.0, description="Streaming event-to-score p95 latency SLO (SLO_LATENCY_P95_SECONDS).")
    slo_dq_pass_rate: float = Field(default=0.95, description="Lowest pass rate of every critical DQ rule (SLO_DQ_PASS_RATE).")
    slo_alert_volume_ratio: float = Field(default=3.0, description="Alert volume may be at most this multiple (or at least its inverse) of the trailing 7-day mean (SLO_ALERT_VOLUME_RATIO).")
    risk_max_high_share: float = Field(default=0.02, description="Most of a day's scores in the HIGH band before band_distribution_within_bounds warns (RISK_MAX_HIGH_SHARE).")
    risk_max_elevated_share: float = Field(default=0.10, description="Most of a day's scores in MEDIUM or HIGH before it warns (RISK_MAX_ELEVATED_SHARE).")
    alert_budget_share: float = Field(default=0.02, description="Most alerts a day may raise, as a share of its scored transactions (ALERT_BUDGET_SHARE).")


_ENV = {
    "psi_warn": "DRIFT_PSI_WARN", "psi_fail": "DRIFT_PSI_FAIL", "band_psi_warn": "DRIFT_BAND_PSI_WARN", "band_psi_fail": "DRIFT_BAND_PSI_FAIL",
    "dlq_rate_warn": "DRIFT_DLQ_RATE_WARN", "dlq_rate_fail": "DRIFT_DLQ_RATE_FAIL", "dq_pass_rate_warn": "DRIFT_DQ_PASS_WARN",
    "dq_pass_rate_fail": "DRIFT_DQ_PASS_FAIL", "challenger_share": "CHALLENGER_SHARE", "challenger_min_agreement": "CHALLENGER_MIN_AGREEMENT",
    "challenger_max_recall_drop": "CHALLENGER_MAX_RECALL_DROP", "challenger_max_alert_ratio": "CHALLENGER_MAX_ALERT_RATIO",
    "slo_latency_p95_seconds": "SLO_LATENCY_P95_SECONDS", "slo_dq_pass_rate": "SLO_DQ_PASS_RATE", "slo_alert_volume_ratio": "SLO_ALERT_VOLUME_RATIO",
    "risk_max_high_share": "RISK_MAX_HIGH_SHARE", "risk_max_elevated_share": "RISK_MAX_ELEVATED_SHARE", "alert_budget_share": "ALERT_BUDGET_SHARE",
}


def monitoring_from_env() -> MonitoringResource:
    """The thresholds, each overridable by its environment variable."""
    fields = MonitoringResource.model_fields
    values = {name: fields[name].annotation(os.environ[var]) for name, var in _ENV.items() if os.getenv(var)}
    return MonitoringResource(**values)
