"""Pipeline data-quality rules (beyond the contract) and the dq_results aggregation.

Rules either REJECT a record (to the DLQ with the rule's reason code), DROP it as a duplicate
(counted, kept in bronze) or FLAG it (kept in silver with dq_status WARN).
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from contracts.rules import CRITICAL, WARNING, Rule

CRITICAL_PASS_RATE = 0.95

UNKNOWN_ACCOUNT = Rule("account_id.known", "account_id", "reference", "kyc_profiles", "UNKNOWN_ACCOUNT", CRITICAL, "account_id exists in kyc_profiles")
NO_FX_RATE = Rule("currency.fx_rate", "currency", "reference", "fx_rates", "NO_FX_RATE", CRITICAL, "an FX rate exists for the currency on the event date")
FUTURE_EVENT = Rule("event_time.not_future", "event_time", "timeliness", None, "EVENT_TIME_IN_FUTURE", CRITICAL, "event date is not after the delivery date")
TOO_LATE = Rule("event_time.lateness", "event_time", "timeliness", None, "ARRIVED_TOO_LATE", WARNING, "event date is within the lateness window of the delivery date")
DUPLICATE = Rule("transaction_id.unique", "transaction_id", "uniqueness", None, "DUPLICATE_TRANSACTION_ID", WARNING, "transaction_id not already delivered")
MISSING_LOCATION = Rule("location.present", "latitude", "completeness", None, "MISSING_LOCATION", WARNING, "card-present and ATM transactions carry coordinates")
UNKNOWN_MERCHANT = Rule("merchant_id.known", "merchant_id", "reference", "merchant_profiles", "UNKNOWN_MERCHANT", WARNING, "merchant_id exists in merchant_profiles")


@dataclass(frozen=True)
class RuleExpr:
    rule: Rule
    checked: Column
    failed: Column


def rejecting_rule_exprs(delivery_date: str | Column, lateness_days: int) -> list[RuleExpr]:
    """Referential and timeliness rules, evaluated on validated, reference-joined rows; timeliness against
    the delivery day (a day, or each row's own day as a column such as `ingest_date`)."""
    contract_ok = F.col("_contract_failed") == 0  # the contract rules' failure mask (validation.validate_payloads)
    day = delivery_date if isinstance(delivery_date, Column) else F.lit(delivery_date).cast("date")
    has_time = contract_ok & F.col("event_time").isNotNull()
    return [
        RuleExpr(UNKNOWN_ACCOUNT, contract_ok, contract_ok & F.col("_kyc_found").isNull()),
        RuleExpr(NO_FX_RATE, contract_ok, contract_ok & F.col("fx_rate_to_base").isNull()),
        RuleExpr(FUTURE_EVENT, has_time, has_time & (F.col("event_date") > day)),
        RuleExpr(TOO_LATE, has_time, has_time & (F.col("event_date") < F.date_sub(day, lateness_days))),
    ]


def flagging_rule_exprs() -> list[RuleExpr]:
    """Warnings that keep the record but mark it dq_status WARN."""
    # an unknown channel (absent) does not say whether coordinates are due: not checked, not passed
    located_channel = F.coalesce(F.col("channel").isin("CARD_PRESENT", "ATM"), F.lit(False))
    has_merchant = F.col("merchant_id").isNotNull()
    return [
        RuleExpr(MISSING_LOCATION, located_channel, located_channel & (F.col("latitude").isNull() | F.col("longitude").isNull())),
        RuleExpr(UNKNOWN_MERCHANT, has_merchant, has_merchant & F.col("_merchant_found").isNull()),
    ]


DQ_RESULTS_SCHEMA = T.StructType(
    [
        T.StructField("event_date", T.DateType(), False),
        T.StructField("rule_id", T.StringType(), False),
        T.StructField("field", T.StringType(), True),
        T.StructField("reason_code", T.StringType(), False),
        T.StructField("severity", T.StringType(), False),
        T.StructField("description", T.StringType(), False),
        T.StructField("action", T.StringType(), False),
        T.StructField("checked", T.LongType(), False),
        T.StructField("failed", T.LongType(), False),
        T.StructField("pass_rate", T.DoubleType(), False),
        T.StructField("dagster_run_id", T.StringType(), True),
    ]
)


def dq_result_rows(delivery_date: str, counts: list[tuple[Rule, str, int, int]], run_id: str | None) -> list[tuple]:
    """dq_results rows from (rule, action, checked, failed); pass rate is 1.0 where nothing was checked."""
    import datetime as dt

    day = dt.date.fromisoformat(delivery_date)
    return [
        (day, r.rule_id, r.field, r.reason_code, r.severity, r.description, action, int(c), int(f), (1.0 - f / c) if c else 1.0, run_id)
        for r, action, c, f in counts
    ]


def critical_failures(dq: DataFrame, threshold: float = CRITICAL_PASS_RATE) -> list[dict]:
    """Critical rules whose pass rate is under the threshold, as plain dicts for check metadata."""
    rows = dq.where((F.col("severity") == CRITICAL) & (F.col("pass_rate") < threshold)).orderBy("pass_rate").collect()
    return [{"rule_id": r.rule_id, "reason_code": r.reason_code, "checked": r.checked, "failed": r.failed, "pass_rate": round(r.pass_rate, 4)} for r in rows]
