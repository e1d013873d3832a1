"""The reference data of one delivery day, held in memory for per-event lookups by the decision service.

Read with the batch path's own functions (ingest/silver.reference_frames: the newest snapshot on or before
the day, FX by `fx_lookup`; ml/model_features.merchant_risk_between: the merchant windows), then
collected into dictionaries, so a decision and the daily assets look up the same rows. The versions
of the tables it was read from say when a refresh is due (a new snapshot, outcome or decision landed).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from compliance_assets.ingest.silver import SILVER, reference_frames
from compliance_assets.ml.features_training import DISPOSITIONS, OUTCOMES, read_outcomes
from compliance_assets.ml.model_features import MERCHANT_WINDOWS_DAYS, merchant_risk_between
from compliance_assets.transforms.enrichment import KYC_COLUMNS, LIMIT_COLUMNS
from resources.lake import LakeResource

REFERENCE_TABLES = ("kyc_profiles", "account_limits", "fx_rates", "merchant_profiles", "watchlists")
WATCHLIST_ENTITIES = ("COUNTERPARTY", "MERCHANT", "ACCOUNT")


@dataclass
class MerchantRisk:
    """A merchant's windows for one event date (`merchant_risk`'s row): transactions per window, the decision
    times of its confirmed-bad ones per window, and the recent confirmations."""

    txns: dict[str, int]
    bad_decided: dict[str, list[dt.datetime]]
    bad_recent: list[dt.datetime]


@dataclass
class ReferenceSnapshot:
    """Everything a decision looks up, for the deliveries of `day`."""

    day: dt.date
    kyc: dict[str, dict]
    limits: dict[str, dict]
    fx: dict[tuple[str, dt.date], tuple[float, dt.date]]
    merchants: dict[str, dict]
    watchlists: dict[tuple[str, str], list[str]]
    merchant_risk: dict[tuple[str, dt.date], MerchantRisk]
    versions: dict[str, int] = field(default_factory=dict)

    def fx_rate(self, currency: str, event_date: dt.date) -> tuple[float, dt.date] | None:
        return self.fx.get((currency, event_date))

    def account_known(self, account_id: str) -> bool:
        return account_id in self.kyc

    def merchant_known(self, merchant_id: str) -> bool:
        return merchant_id in self.merchants

    def watchlist_names(self, counterparty_id: str | None, merchant_id: str | None, account_id: str | None) -> list[str]:
        """enrichment.join_references' watchlist_names: the lists naming any of the three, sorted and distinct."""
        names: set[str] = set()
        lists = self.watchlists
        for entity_type, entity_id in zip(WATCHLIST_ENTITIES, (counterparty_id, merchant_id, account_id)):
            if entity_id is not None and (found := lists.get((entity_type, entity_id))):
                names.update(found)
        return sorted(names) if names else []


def source_versions(lake: LakeResource) -> dict[str, int]:
    """The Delta versions a snapshot depends on (-1 for a missing table): a change means a refresh. Read with
    delta-rs, so polling them costs no Spark job."""
    return {t: lake.current_version(t) for t in (*REFERENCE_TABLES, OUTCOMES, DISPOSITIONS)}


def load_references(spark: SparkSession, lake: LakeResource, day: dt.date, lateness_days: int, label_delay_days: int) -> ReferenceSnapshot:
    """Collect the day's reference frames and merchant risk for every event date a delivery on `day` may carry."""
    versions = source_versions(lake)
    refs = reference_frames(spark, lake, str(day), lateness_days)
    kyc = {r["account_id"]: {dst: r[src] for src, dst in KYC_COLUMNS.items()} for r in refs.kyc.select("account_id", *KYC_COLUMNS).collect()}
    limits = {r["account_id"]: {c: r[c] for c in LIMIT_COLUMNS} for r in refs.limits.select("account_id", *LIMIT_COLUMNS).collect()}
    fx = {(r["currency"], r["event_date"]): (r["fx_rate_to_base"], r["fx_rate_date"]) for r in refs.fx.select("currency", "event_date", "fx_rate_to_base", "fx_rate_date").collect()}
    merchants = {r["merchant_id"]: {"merchant_mcc_code": r["mcc_code"], "merchant_country": r["country"]} for r in refs.merchants.select("merchant_id", "mcc_code", "country").collect()}
    watchlists: dict[tuple[str, str], set[str]] = {}
    for r in refs.watchlists.select("entity_type", "entity_id", "list_name").collect():
        watchlists.setdefault((r["entity_type"], r["entity_id"]), set()).add(r["list_name"])

    first_scored = day - dt.timedelta(days=lateness_days)
    dates = spark.range(1).select(F.explode(F.sequence(F.lit(first_scored), F.lit(day))).alias("event_date"))
    targets = refs.merchants.select("merchant_id").distinct().crossJoin(dates)
    silver = lake.read_or_empty(spark, SILVER, "transaction_id string, merchant_id string, event_date date, ingest_date date")
    risk_rows = merchant_risk_between(targets, silver, read_outcomes(spark, lake), first_scored, day, label_delay_days).collect()
    risk = {
        (r["merchant_id"], r["event_date"]): MerchantRisk(
            {w: r[f"_txns_{w}"] or 0 for w in MERCHANT_WINDOWS_DAYS},
            {w: list(r[f"_bad_decided_{w}"] or ()) for w in MERCHANT_WINDOWS_DAYS},
            list(r["_bad_recent"] or ()),
        )
        for r in risk_rows
    }
    return ReferenceSnapshot(day, kyc, limits, fx, merchants, {k: sorted(v) for k, v in watchlists.items()}, risk, versions)
