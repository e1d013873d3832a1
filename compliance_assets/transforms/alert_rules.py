"""The alert rules: which scored transactions become anomaly alerts, with which reasons and which alert id.
One definition, executed two ways: `alert_rows` on Spark frames (the daily asset and the Delta lane) and
`alert_reason_values` / `alert_id_value` per event (the real-time decision service); the parity tests in
tests/realtime hold them equal."""

import datetime as dt
import hashlib

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

HIGH_RISK, WATCHLIST, LIMIT = "HIGH_RISK_SCORE", "WATCHLIST_MATCH", "LIMIT_BREACH_SINGLE_TRANSACTION"
DETAIL_SEPARATOR = ":"  # a reason's detail follows its family: WATCHLIST_MATCH:OFAC_SDN


RULE_COLUMNS = ("transaction_id", "event_time", "watchlist_hit", "watchlist_names", "exceeds_single_limit", "merchant_id", "amount_base")


def alert_rows(gold: DataFrame, rules: DataFrame) -> DataFrame:
    """The alerts for scored rows (`gold`) given their silver rule columns (`rules`, RULE_COLUMNS):
    one row per transaction with at least one reason. Used by the daily asset and the stream."""
    joined = gold.join(rules.select(*RULE_COLUMNS), ["transaction_id", "event_time"])
    watchlist = F.transform(F.coalesce("watchlist_names", F.array().cast("array<string>")), lambda n: F.concat(F.lit(WATCHLIST + DETAIL_SEPARATOR), n))
    reason_codes = F.concat(
        F.when(F.col("risk_band") == "HIGH", F.array(F.lit(HIGH_RISK))).otherwise(F.array().cast("array<string>")),
        F.when(F.col("watchlist_hit"), watchlist).otherwise(F.array().cast("array<string>")),
        F.when(F.coalesce("exceeds_single_limit", F.lit(False)), F.array(F.lit(LIMIT))).otherwise(F.array().cast("array<string>")),
    )
    return (
        joined.withColumn("reasons", reason_codes)
        .where(F.size("reasons") > 0)
        .select(
            F.concat(F.lit("ALR-"), F.substring(F.sha2(F.concat_ws("|", "transaction_id", F.date_format("event_time", "yyyy-MM-dd'T'HH:mm:ss")), 256), 1, 24)).alias("alert_id"),
            "transaction_id", "event_time", "account_id", "merchant_id", "amount_base",
            F.col("reasons")[0].alias("primary_reason"), "reasons", "risk_score", "risk_band", "top_features",
            "model_name", "model_version", "dq_status",
            F.col("scored_at").alias("raised_at"), F.col("pipeline_run_id"), "event_date", "ingest_date",
        )
    )


def alert_reason_values(risk_band: str, watchlist_hit: bool | None, watchlist_names: list[str] | None, exceeds_single_limit: bool | None) -> list[str]:
    """`alert_rows`' reasons for one scored transaction (empty: no alert): the real-time lane's twin."""
    reasons = [HIGH_RISK] if risk_band == "HIGH" else []
    if watchlist_hit:
        reasons += [WATCHLIST + DETAIL_SEPARATOR + n for n in (watchlist_names or ())]
    if exceeds_single_limit:
        reasons.append(LIMIT)
    return reasons


def alert_id_value(transaction_id: str, event_time: dt.datetime) -> str:
    """`alert_rows`' alert_id for one transaction (event_time in UTC, to the second)."""
    return "ALR-" + hashlib.sha256(f"{transaction_id}|{event_time:%Y-%m-%dT%H:%M:%S}".encode("utf-8")).hexdigest()[:24]


def scenario_of(reason: Column) -> Column:
    """A reason's scenario, its family without the detail (WATCHLIST_MATCH:OFAC_SDN -> WATCHLIST_MATCH): how
    precision, the dashboard and BI group alerts."""
    return F.substring_index(reason, DETAIL_SEPARATOR, 1)
