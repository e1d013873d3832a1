"""One decision per transaction event: validate, enrich, update the account's state, score, apply the alert rules.

Each step calls the one-record twin of the batch definition, kept beside it (contract rules in
realtime/validation.py from contracts/, FX and limits in transforms/enrichment.py, the windows in
transforms/features.py via account_state.py, the model's features in ml/model_features.py, the alert
rules in ml/alerts.py), and scores with the champion's own `RiskModel` (TreeSHAP top features as gold).
The decision record carries the silver row, so the Delta lane writes silver, gold and alerts without
recomputing anything. A decision is a function of the event, the account's state, the reference
snapshot and the model: replayed from a state snapshot, it is the same record (`decided_at` aside).
"""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable, NamedTuple

import numpy as np
import orjson

from compliance_assets.transforms.alert_rules import alert_id_value, alert_reason_values
from compliance_assets.ml.model_features import MODEL_FEATURES, merchant_feature_values, silver_feature_values
from compliance_assets.ml.risk_model import RiskModel
from compliance_assets.realtime.account_state import AccountState, event_key
from compliance_assets.realtime.reference import ReferenceSnapshot
from compliance_assets.realtime.validation import check_record
from compliance_assets.transforms.enrichment import BASE_CURRENCY, amount_in_base_value, limit_flag_values, mask_pii_value
from compliance_assets.transforms.features import reference_feature_values, spark_round_all
from compliance_assets.transforms.quality import DUPLICATE
from contracts import load_contract, pii_fields

SCORED, REJECTED, DUPLICATE_EVENT = "SCORED", "REJECTED", "DUPLICATE"
KAFKA_SOURCE = "kafka"  # the bronze source of a Kafka record, as streaming/inputs.py names it
MISKEYED = "MISKEYED_EVENT"  # the message key is not the event's account_id: its state may live on another partition
PII_FIELDS = tuple(pii_fields(load_contract("transactions")))
_MODEL_FEATURE_SET = frozenset(MODEL_FEATURES)
_EPOCH = dt.datetime(1970, 1, 1)  # the broker timestamps' origin, naive UTC


@dataclass(frozen=True)
class Champion:
    """The model that decides, and the registry coordinates every decision names."""

    name: str
    version: str
    run_id: str | None
    model: RiskModel


class Event(NamedTuple):
    """One transactions-topic message: where it came from, when the broker took it, its bytes (a named tuple: one
    is made per message, and a tuple is made in a fraction of a frozen dataclass's time)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None

    @property
    def source_file(self) -> str:
        return f"{self.topic}/{self.partition}"

    @property
    def ingest_id(self) -> str:
        """transforms/ingestion.ingest_id of the Kafka record: source, topic/partition, offset."""
        return f"{KAFKA_SOURCE}:{self.source_file}:{self.offset}"


@dataclass
class Decision:
    """A decision record under construction; `record()` is what goes to the decisions topic."""

    event: Event
    payload: str | None
    arrived_at: dt.datetime
    delivery_date: dt.date
    outcome: str
    transaction_id: str | None = None
    account_id: str | None = None
    reason_codes: list[str] = field(default_factory=list)
    dq_warnings: list[str] = field(default_factory=list)
    routing_warnings: list[str] = field(default_factory=list)
    silver: dict[str, Any] | None = None
    features: dict[str, float | None] | None = None
    risk_score: float | None = None
    risk_band: str | None = None
    top_features: list[dict] | None = None
    alert_reasons: list[str] = field(default_factory=list)
    alert_id: str | None = None
    pii: dict[str, str | None] | None = None
    invalid_utf8: bool = False

    def record(self, champion: Champion, references: ReferenceSnapshot, decided_at: dt.datetime) -> dict:
        e = self.event
        return {
            "transaction_id": self.transaction_id,
            "account_id": self.account_id,
            "outcome": self.outcome,
            "ingest_id": e.ingest_id,
            "source": KAFKA_SOURCE,
            "source_file": e.source_file,
            "source_line": e.offset,
            "payload": self.payload,
            # the original bytes where they are not UTF-8 (bronze keeps them; the text shows U+FFFD)
            "payload_b64": base64.b64encode(e.value).decode("ascii") if self.invalid_utf8 else None,
            # a rejected record's PII values as decoded, for the DLQ's masking of its payload (silver's are masked)
            "pii": self.pii,
            "arrived_at": self.arrived_at,
            "delivery_date": self.delivery_date,
            "reason_codes": self.reason_codes,
            "dq_warnings": self.dq_warnings,
            "routing_warnings": self.routing_warnings,
            "silver": self.silver,
            "features": self.features,
            "risk_score": self.risk_score,
            "risk_band": self.risk_band,
            "top_features": self.top_features,
            "alert_id": self.alert_id,
            "alert_reasons": self.alert_reasons,
            "model_name": champion.name if self.outcome == SCORED else None,
            "model_version": champion.version if self.outcome == SCORED else None,
            "model_run_id": champion.run_id if self.outcome == SCORED else None,
            "reference_day": references.day,
            "decided_at": decided_at,
        }


def _decoded(value: bytes | None) -> tuple[str | None, bool]:
    """A message value as text, and whether its bytes were not UTF-8 (the text then shows U+FFFD for them)."""
    if value is None:
        return None, False
    try:
        return value.decode("utf-8"), False
    except UnicodeDecodeError:
        return value.decode("utf-8", errors="replace"), True


def _json_default(value: Any) -> Any:
    t = type(value)  # the exact types first: what the records hold
    if t is dt.date:
        return value.isoformat()
    if t is dt.datetime:
        if value.tzinfo is None:  # isoformat(timespec="microseconds"), quicker
            text = value.isoformat()
            return text if value.microsecond else text + ".000000"
        return value.isoformat(timespec="microseconds")
    if t is Decimal:
        return str(value)
    if isinstance(value, dt.datetime):
        return value.isoformat(timespec="microseconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class _Texts(dict):
    """`_json_default`'s text of a value, looked up: a record's dates are few distinct ones (event, delivery and
    reference days, account dates) and its naive datetimes often recur (a batch's decision time), kept here so that
    most cost a dict lookup; other values are formatted each time (decimals and aware datetimes: equal ones may be
    written differently)."""

    def __missing__(self, value: Any) -> Any:
        text = _json_default(value)
        t = type(value)
        if t is dt.date or (t is dt.datetime and value.tzinfo is None):
            if len(self) >= 4096:
                self.clear()
            self[value] = text
        return text


_TEXTS = _Texts()
# datetimes to `default` (orjson leaves out a zero microsecond; the records always write six digits)
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME


def encode(record: dict) -> bytes:
    """The record as JSON (dates ISO, decimals as strings, NaN as null), keys in a fixed order: a replayed
    decision encodes to the same bytes but for `decided_at`."""
    return orjson.dumps(record, default=_TEXTS.__getitem__, option=_ORJSON_OPTIONS)


class Decider:
    """Decides events with one champion, one reference snapshot and the accounts' states it is handed."""

    def __init__(self, pii_salt: str, lateness_days: int, delivery_date: dt.date | None = None):
        self.salt = pii_salt
        self.lateness_days = lateness_days
        self.delivery_date = delivery_date  # a fixed delivery day (replays); None = the broker timestamp's UTC date

    def arrival(self, event: Event) -> tuple[dt.datetime, dt.date]:
        arrived = _EPOCH + dt.timedelta(milliseconds=event.timestamp_ms)
        return arrived, self.delivery_date or arrived.date()

    def decide(self, events: list[Event], state_of: Callable[[str], AccountState], champion: Champion, references: ReferenceSnapshot) -> list[Decision]:
        """Decisions for `events` in order (the states `state_of(account_id)` hands out updated), scored together."""
        decisions = [self._prepare(e, state_of, references) for e in events]
        scored = [d for d in decisions if d.outcome == SCORED]
        if scored:
            self._score(scored, champion)
        return decisions

    def _prepare(self, event: Event, state_of: Callable[[str], AccountState], refs: ReferenceSnapshot) -> Decision:
        arrived, day = self.arrival(event)
        payload, invalid = _decoded(event.value)
        checked = check_record(payload, day, self.lateness_days, refs.account_known, refs.fx_rate, refs.merchant_known, invalid_bytes=invalid)
        v = checked.values
        d = Decision(event, payload, arrived, day, REJECTED, v.get("transaction_id"), v.get("account_id"), list(checked.reason_codes), list(checked.dq_warnings))
        d.invalid_utf8 = invalid
        if checked.rejected:
            d.pii = {name: v.get(name) for name in PII_FIELDS}
            return d
        account = v["account_id"]
        if event.key is not None and event.key != account.encode("utf-8"):
            d.routing_warnings.append(MISKEYED)
        state = state_of(account)
        keyed = event_key(v["transaction_id"], v["event_time"])
        if state.holds(v["transaction_id"], v["event_time"], keyed):
            d.outcome, d.reason_codes, d.dq_warnings = DUPLICATE_EVENT, [DUPLICATE.reason_code], []
            return d
        d.outcome = SCORED
        amount_base = amount_in_base_value(v["amount"], checked.fx_rate_to_base)
        behaviour = state.update(v["transaction_id"], v["event_time"], amount_base, v.get("latitude"), v.get("longitude"), v.get("delivery_latitude"), v.get("delivery_longitude"), keyed)
        previous_date = behaviour.pop("previous_event_date")
        d.silver = self._silver(v, checked, day, amount_base, behaviour, previous_date, refs, event)
        d.features = {**silver_feature_values(d.silver), **merchant_feature_values(v.get("merchant_id"), v["event_time"], refs.merchant_risk.get((v.get("merchant_id"), checked.event_date)))}
        return d

    def _silver(self, v: dict, checked, day: dt.date, amount_base: Decimal, behaviour: dict, previous_date, refs: ReferenceSnapshot, event: Event) -> dict:
        """The transaction's silver row (pipeline.silver_frame for one record), processing metadata aside."""
        account, merchant = v["account_id"], v.get("merchant_id")
        kyc = refs.kyc.get(account, {})
        limits = refs.limits.get(account, {})
        names = refs.watchlist_names(v.get("counterparty_id"), merchant, account)
        row = {
            **v,
            "event_date": checked.event_date,
            "ingest_date": day,
            "amount_base": amount_base,
            "base_currency": BASE_CURRENCY,
            "fx_rate_to_base": checked.fx_rate_to_base,
            "fx_rate_date": checked.fx_rate_date,
            **(refs.merchants.get(merchant) or {"merchant_mcc_code": None, "merchant_country": None}),
            **{c: kyc.get(c) for c in ("home_country", "home_latitude", "home_longitude", "kyc_risk_rating", "pep_flag", "segment", "typical_amount", "account_opened_date", "last_activity_date")},
            **{c: limits.get(c) for c in ("single_transaction_limit", "daily_limit", "reporting_threshold")},
            **limit_flag_values(amount_base, limits.get("single_transaction_limit"), limits.get("reporting_threshold")),
            "watchlist_hit": bool(names),
            "watchlist_names": names,
            **behaviour,
            **reference_feature_values(amount_base, checked.event_date, previous_date, v.get("latitude"), v.get("longitude"), kyc),
            "arrival_delay_days": (day - checked.event_date).days,
            "dq_warnings": list(checked.dq_warnings),
            "source": KAFKA_SOURCE,
            "ingest_id": event.ingest_id,
            "source_file": event.source_file,
            "source_line": event.offset,
        }
        row["is_late_arrival"] = row["arrival_delay_days"] > 0
        row["dq_status"] = "WARN" if checked.dq_warnings else "PASS"
        for name in PII_FIELDS:
            row[name] = mask_pii_value(row.get(name), self.salt)
        return row

    def _score(self, decisions: list[Decision], champion: Champion) -> None:
        model = champion.model
        if tuple(model.features) == MODEL_FEATURES and all(tuple(d.features) == MODEL_FEATURES for d in decisions):  # the dicts' order
            rows = [list(d.features.values()) for d in decisions]
            X = np.array(rows, dtype=np.float64)  # None as NaN
        else:
            rows = None
            X = np.array([[np.nan if (x := get(f)) is None else x for f in model.features] for get in (d.features.get for d in decisions)], dtype=np.float64)
        s = model.score_matrix(X)
        names = model.feature_names
        # as Python values: what float() and str() of each element give
        scores, bands = spark_round_all(s.risk_score, 6), s.risk_band.tolist()
        k, rounded = s.top_contributions.shape[1], spark_round_all(s.top_contributions, 6)  # rounded as one array, row by row
        top_index, top_values, top_contributions = s.top_index.tolist(), s.top_values.tolist(), [rounded[i * k:(i + 1) * k] for i in range(len(scores))]
        # a row whose NaNs are its Nones, without infinities, has only finite values (else they become None below)
        nans, infinities = (np.isnan(X).sum(axis=1).tolist(), np.isinf(X).any(axis=1).tolist()) if rows is not None else (None, None)
        for i, (d, score, band, index, values, contributions) in enumerate(zip(decisions, scores, bands, top_index, top_values, top_contributions)):
            d.risk_score = score
            d.risk_band = band
            d.top_features = [
                {"feature": names[j], "value": value if value - value == 0 else None, "contribution": c}  # NaN and infinities as None
                for j, value, c in zip(index, values, contributions)
            ]
            row = d.silver
            d.alert_reasons = alert_reason_values(band, row["watchlist_hit"], row["watchlist_names"], row["exceeds_single_limit"])
            d.alert_id = alert_id_value(d.transaction_id, row["event_time"]) if d.alert_reasons else None
            if rows is None or infinities[i] or nans[i] != rows[i].count(None):
                # NaN and infinities as None (the values are floats or None)
                d.features = {k: v if v is None or v - v == 0 else None for k, v in d.features.items()}
        assert all(d.features.keys() == _MODEL_FEATURE_SET for d in decisions)
