"""Enrichment of validated transactions with reference data, FX normalisation and PII masking."""

from __future__ import annotations

import datetime as dt
import hashlib
from decimal import ROUND_HALF_UP, Decimal

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from contracts import load_contract, pii_fields

BASE_CURRENCY = "EUR"

KYC_COLUMNS = {
    "home_country": "home_country",
    "home_latitude": "home_latitude",
    "home_longitude": "home_longitude",
    "risk_rating": "kyc_risk_rating",
    "pep_flag": "pep_flag",
    "segment": "segment",
    "typical_amount": "typical_amount",
    "account_opened_date": "account_opened_date",
    "last_activity_date": "last_activity_date",
}
LIMIT_COLUMNS = ("single_transaction_limit", "daily_limit", "reporting_threshold")


def mask_pii(value: Column, salt: str) -> Column:
    """A stable pseudonymous token for a PII value: equal inputs give equal tokens, names never leave bronze."""
    return F.when(value.isNotNull(), F.concat(F.lit("pii_"), F.substring(F.sha2(F.concat(F.lit(salt), value), 256), 1, 16)))


def mask_pii_value(value: str | None, salt: str) -> str | None:
    """`mask_pii` for one value (the real-time lane)."""
    return None if value is None else "pii_" + hashlib.sha256((salt + value).encode("utf-8")).hexdigest()[:16]


MASKED = "pii_masked"


def mask_payload_pii(payload: Column, contract_name: str, salt: str) -> Column:
    """A raw JSON payload with the string value of every `x-pii` property replaced: by the same token as
    in silver where the record's value was decoded (the column of that name), else by MASKED. A value
    cut off by the end of a broken line is masked to the end."""
    for field in pii_fields(load_contract(contract_name)):
        token = F.coalesce(mask_pii(F.col(field), salt), F.lit(MASKED))
        # possessive quantifiers: no backtracking (and no deep regex recursion) on long values
        pattern = rf'("{field}"\s*:\s*)"[^"\\]*+(?:\\.[^"\\]*+)*+(?:"|$)'
        payload = F.regexp_replace(payload, F.lit(pattern), F.concat(F.lit('$1"'), token, F.lit('"')))
    return payload


def mask_contract_pii(df: DataFrame, contract_name: str, salt: str) -> DataFrame:
    """Replace every `x-pii` property of the contract with its token."""
    for field in pii_fields(load_contract(contract_name)):
        df = df.withColumn(field, mask_pii(F.col(field), salt))
    return df


def fx_lookup(fx: DataFrame, first_day: dt.date, last_day: dt.date) -> DataFrame:
    """(currency, event_date) -> the rate to apply for every day in [first_day, last_day].

    The event date's own rate when it was delivered, else the nearest earlier rate, else the nearest
    later one (e.g. for a late arrival from before the first rate file); fx_rate_date records which.
    """
    days = fx.sparkSession.range(1).select(F.explode(F.sequence(F.lit(first_day), F.lit(last_day))).alias("event_date"))
    grid = fx.select("currency").distinct().crossJoin(days)
    rates = fx.select("currency", F.col("rate_date").alias("fx_rate_date"), F.col("rate_to_base").alias("fx_rate_to_base"))
    best = Window.partitionBy("currency", "event_date").orderBy(
        (F.col("fx_rate_date") > F.col("event_date")).asc(), F.abs(F.datediff("event_date", "fx_rate_date")).asc()
    )
    return grid.join(rates, "currency").withColumn("_rn", F.row_number().over(best)).where("_rn = 1").drop("_rn")


def reference_checks(df: DataFrame, kyc: DataFrame, fx: DataFrame, merchants: DataFrame) -> DataFrame:
    """What the referential rules need: the event date, the FX rate to apply (null when none) and
    whether the account (`_kyc_found`) and merchant (`_merchant_found`) exist. Broadcast lookups."""
    accounts = kyc.select("account_id").distinct().withColumn("_kyc_found", F.lit(True))
    known_merchants = merchants.select("merchant_id").distinct().withColumn("_merchant_found", F.lit(True))
    return (
        df.withColumn("event_date", F.to_date("event_time"))
        .join(F.broadcast(accounts), "account_id", "left")
        .join(F.broadcast(fx), ["currency", "event_date"], "left")
        .join(F.broadcast(known_merchants), "merchant_id", "left")
    )


def join_references(df: DataFrame, kyc: DataFrame, limits: DataFrame, merchants: DataFrame, watchlists: DataFrame) -> DataFrame:
    """Left-join KYC, limits, merchant attributes and watchlist hits (small frames, broadcast)."""
    kyc_sel = kyc.select("account_id", *[F.col(src).alias(dst) for src, dst in KYC_COLUMNS.items()])
    limits_sel = limits.select("account_id", *LIMIT_COLUMNS)
    merch_sel = merchants.select("merchant_id", F.col("mcc_code").alias("merchant_mcc_code"), F.col("country").alias("merchant_country"))
    lists = watchlists.groupBy("entity_type", "entity_id").agg(F.array_sort(F.collect_set("list_name")).alias("lists"))

    def hits(entity_type: str, key: str, alias: str) -> DataFrame:
        return lists.where(F.col("entity_type") == entity_type).select(F.col("entity_id").alias(key), F.col("lists").alias(alias))

    out = (
        df.join(F.broadcast(kyc_sel), "account_id", "left")
        .join(F.broadcast(limits_sel), "account_id", "left")
        .join(F.broadcast(merch_sel), "merchant_id", "left")
        .join(F.broadcast(hits("COUNTERPARTY", "counterparty_id", "_wl_cp")), "counterparty_id", "left")
        .join(F.broadcast(hits("MERCHANT", "merchant_id", "_wl_m")), "merchant_id", "left")
        .join(F.broadcast(hits("ACCOUNT", "account_id", "_wl_a")), "account_id", "left")
    )
    no_hit = F.col("_wl_cp").isNull() & F.col("_wl_m").isNull() & F.col("_wl_a").isNull()
    watchlist_names = F.when(no_hit, F.array().cast("array<string>")).otherwise(
        F.array_sort(F.array_distinct(F.concat(F.coalesce("_wl_cp", F.array()), F.coalesce("_wl_m", F.array()), F.coalesce("_wl_a", F.array()))))
    ).cast("array<string>")
    return out.withColumn("watchlist_names", watchlist_names).withColumn("watchlist_hit", F.size(watchlist_names) > 0).drop("_wl_cp", "_wl_m", "_wl_a")


def amount_in_base(df: DataFrame, base_currency: str = BASE_CURRENCY) -> DataFrame:
    """Amount in the base currency (needs `fx_rate_to_base`)."""
    amount_base = F.round(F.col("amount").cast("decimal(24,8)") * F.col("fx_rate_to_base").cast("decimal(24,12)"), 2).cast("decimal(18,2)")
    return df.withColumn("amount_base", amount_base).withColumn("base_currency", F.lit(base_currency))


_RATE_SCALE, _PRODUCT_SCALE, _CENTS = Decimal(1).scaleb(-12), Decimal(1).scaleb(-9), Decimal("0.01")


def amount_in_base_value(amount: Decimal, rate_to_base: float) -> Decimal:
    """`amount_in_base` for one record, with Spark's decimal steps: the double rate as decimal(24,12), the
    product at the 9 decimals Spark keeps for decimal(24,8) * decimal(24,12), then rounded to cents (HALF_UP)."""
    rate = _RATES.get(rate_to_base) if rate_to_base else None  # not 0.0, which is also -0.0, nor NaN, which is no key
    if rate is None:
        rate = Decimal(repr(rate_to_base)).quantize(_RATE_SCALE, rounding=ROUND_HALF_UP)
        if rate_to_base and rate_to_base == rate_to_base:
            if len(_RATES) >= 4096:
                _RATES.clear()
            _RATES[rate_to_base] = rate
    return (amount * rate).quantize(_PRODUCT_SCALE, rounding=ROUND_HALF_UP).quantize(_CENTS, rounding=ROUND_HALF_UP)


_RATES: dict[float, Decimal] = {}  # a day's few FX rates as decimal(24,12), for the real-time lane


def limit_flag_values(amount_base: Decimal, single_transaction_limit: float | None, reporting_threshold: float | None) -> dict[str, bool | None]:
    """`limit_flags` for one record (Spark compares the decimal amount with the double limits as doubles)."""
    amount = float(amount_base)
    below = None if reporting_threshold is None else amount >= reporting_threshold * 0.9 and amount < reporting_threshold
    return {
        "exceeds_single_limit": None if single_transaction_limit is None else amount > single_transaction_limit,
        "just_below_reporting_threshold": below,
    }


def limit_flags(df: DataFrame) -> DataFrame:
    """Limit breaches that depend on the base amount (needs the account's limits)."""
    threshold = F.col("reporting_threshold")
    return df.withColumn("exceeds_single_limit", F.col("amount_base") > F.col("single_transaction_limit")).withColumn(
        "just_below_reporting_threshold", (F.col("amount_base") >= threshold * 0.9) & (F.col("amount_base") < threshold)
    )
