"""Warn / fail levels shared by the monitoring tables and their asset checks."""

from dagster import AssetCheckResult, AssetCheckSeverity

OK, WARN, FAIL = "OK", "WARN", "FAIL"


def level(value: float | None, warn: float, fail: float, higher_is_worse: bool = True) -> str:
    """OK, WARN or FAIL for a measured value against its thresholds (None = nothing measured = OK)."""
    if value is None:
        return OK
    worse = (lambda t: value >= t) if higher_is_worse else (lambda t: value < t)
    return FAIL if worse(fail) else WARN if worse(warn) else OK


def leveled_result(statuses: list[str], metadata: dict) -> AssetCheckResult:
    """A check result from row statuses: passed when all are OK, an ERROR when any FAILs, else a WARN."""
    worst = FAIL if FAIL in statuses else WARN if WARN in statuses else OK
    return AssetCheckResult(
        passed=worst == OK,
        severity=AssetCheckSeverity.ERROR if worst == FAIL else AssetCheckSeverity.WARN,
        metadata={"status": worst, **metadata},
    )
