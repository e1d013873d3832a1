"""The BI serving tables and views: what Power BI (through Azure SQL / Synapse), Excel or any SQL client reads.

One table per published Delta source, named like it, with the source's columns (arrays such as reasons and
top_features as JSON text; times are naive UTC) plus three audit columns: `partition_day` (the Dagster
partition, i.e. the delivery day the rows were published for), `published_at` and `dagster_run_id` (the
publishing run). The source's own run id, where it has one, is `source_run_id`. Types are portable across
SQLite, PostgreSQL and SQL Server (SQLAlchemy Core); the views are SQLAlchemy selects compiled per dialect.
"""

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Double,
    Engine,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    case,
    cast,
    func,
    inspect,
    literal,
    select,
    text,
)

metadata = MetaData()
AUDIT_COLUMNS = ("partition_day", "published_at", "dagster_run_id")


def _audit() -> list:
    return [
        Column("partition_day", Date, nullable=False, comment="The Dagster partition (delivery day) these rows were published for."),
        Column("published_at", DateTime, nullable=False, comment="When the bi_serving run published them (UTC)."),
        Column("dagster_run_id", String(64), nullable=False, comment="The Dagster run that published them."),
    ]


def _table(name: str, comment: str, *columns) -> Table:
    table = Table(name, metadata, *columns, *_audit(), comment=comment)
    Index(f"ix_{name}_partition_day", table.c.partition_day)
    return table


risk_scores = _table(
    "risk_scores_gold",
    "Risk score of every transaction of the delivery day (one row per transaction_id, event_time).",
    Column("transaction_id", String(64), nullable=False),
    Column("event_time", DateTime, nullable=False),
    Column("account_id", String(16), nullable=False),
    Column("risk_score", Double, nullable=False),
    Column("risk_band", String(8), nullable=False),
    Column("top_features", Text, comment="JSON array of {feature, value, contribution}."),
    Column("model_name", String(128), nullable=False),
    Column("model_version", String(32), nullable=False),
    Column("model_run_id", String(64)),
    Column("pipeline_run_id", String(64), nullable=False),
    Column("dq_status", String(8), nullable=False),
    Column("scored_at", DateTime, nullable=False),
    Column("latency_ms", Double),
    Column("event_date", Date, nullable=False),
    Column("ingest_date", Date, nullable=False),
)

alerts = _table(
    "anomaly_alerts",
    "Alerts of the delivery day with their scenario (primary reason family), channel and country.",
    Column("alert_id", String(32), nullable=False),
    Column("transaction_id", String(64), nullable=False),
    Column("event_time", DateTime, nullable=False),
    Column("account_id", String(16)),
    Column("merchant_id", String(16)),
    Column("amount_base", Numeric(18, 2)),
    Column("scenario", String(64), nullable=False, comment="primary_reason before any ':' (HIGH_RISK_SCORE, WATCHLIST_MATCH, ...)."),
    Column("primary_reason", String(256), nullable=False),
    Column("reasons", Text, comment="JSON array of every reason."),
    Column("risk_score", Double),
    Column("risk_band", String(8)),
    Column("top_features", Text, comment="JSON array of {feature, value, contribution}."),
    Column("model_name", String(128)),
    Column("model_version", String(32)),
    Column("dq_status", String(8)),
    Column("raised_at", DateTime),
    Column("pipeline_run_id", String(64)),
    Column("channel", String(32), comment="From transactions_silver; null when the transaction is not in silver."),
    Column("country", String(8), comment="From transactions_silver; null when the transaction is not in silver."),
    Column("event_date", Date, nullable=False),
    Column("ingest_date", Date, nullable=False),
)

dq_results = _table(
    "dq_results",
    "Data-quality results per delivery day and rule.",
    Column("event_date", Date, nullable=False),
    Column("rule_id", String(128), nullable=False),
    Column("field", String(128)),
    Column("reason_code", String(128), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("description", Text, nullable=False),
    Column("action", String(16), nullable=False),
    Column("checked", BigInteger, nullable=False),
    Column("failed", BigInteger, nullable=False),
    Column("pass_rate", Double, nullable=False),
    Column("source_run_id", String(64)),
)

reconciliation = _table(
    "reconciliation_report",
    "Ledger vs pipeline: transactions and amount per currency and category for the delivery day.",
    Column("event_date", Date, nullable=False),
    Column("currency", String(8)),
    Column("category", String(32), nullable=False),
    Column("explained", Boolean),
    Column("transactions", BigInteger, nullable=False),
    Column("amount", Numeric(28, 2)),
    Column("first_reconciled_at", DateTime, nullable=False),
    Column("deadline", DateTime, nullable=False),
    Column("source_run_id", String(64)),
    Column("reconciled_at", DateTime, nullable=False),
)

snapshot_summaries = _table(
    "regulatory_snapshot_summaries",
    "Every version of the day's regulatory snapshot: row count, amount totals, alerts, SHA-256, supersede reason.",
    Column("snapshot_table", String(64), nullable=False),
    Column("period", String(10), nullable=False),
    Column("snapshot_version", Integer, nullable=False),
    Column("is_current", Boolean, nullable=False, comment="The newest version of the period."),
    Column("row_count", BigInteger, nullable=False),
    Column("amount_totals", Text, nullable=False, comment="JSON {currency: total}."),
    Column("amount_base_total", Numeric(28, 2), nullable=False),
    Column("alerts", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("supersedes_version", Integer),
    Column("supersede_reason", Text),
    Column("same_content_as_superseded", Boolean),
    Column("requested_by", String(256)),
    Column("incident_id", String(128)),
    Column("delta_version", BigInteger, nullable=False),
    Column("source_run_id", String(64)),
    Column("created_at", DateTime, nullable=False),
)


# The views: the questions BI users ask.

def _pass_rate(checked, failed):
    return case((checked == 0, literal(1.0, Double)), else_=literal(1.0, Double) - cast(failed, Double) / cast(checked, Double))


def view_selects() -> dict:
    """{view name: select} of every BI view."""
    a, g, d, r, s = alerts.c, risk_scores.c, dq_results.c, reconciliation.c, snapshot_summaries.c
    unexplained = case((r.explained == False, r.transactions), else_=literal(0, BigInteger))  # noqa: E712 (SQL comparison)
    explained = case((r.explained == True, r.transactions), else_=literal(0, BigInteger))  # noqa: E712
    ledger = case((r.category == "LEDGER", r.transactions), else_=literal(0, BigInteger))
    matched = case((r.category == "MATCHED", r.transactions), else_=literal(0, BigInteger))
    late = func.min(r.first_reconciled_at) > func.min(r.deadline)
    return {
        "bi_alerts_daily": select(
            a.partition_day, a.risk_band, a.scenario, a.channel, a.country,
            func.count().label("alerts"), func.sum(a.amount_base).label("amount_base"),
        ).group_by(a.partition_day, a.risk_band, a.scenario, a.channel, a.country),
        "bi_dq_pass_rate": select(
            d.rule_id, d.severity, d.action,
            func.count().label("days"), func.min(d.partition_day).label("first_day"), func.max(d.partition_day).label("last_day"),
            func.sum(d.checked).label("checked"), func.sum(d.failed).label("failed"),
            _pass_rate(func.sum(d.checked), func.sum(d.failed)).label("pass_rate"),
            func.min(d.pass_rate).label("worst_daily_pass_rate"),
        ).group_by(d.rule_id, d.severity, d.action),
        "bi_model_versions": select(
            g.model_name, g.model_version, g.model_run_id,
            func.min(g.partition_day).label("first_day"), func.max(g.partition_day).label("last_day"),
            func.count(func.distinct(g.partition_day)).label("days"), func.count().label("transactions_scored"),
            func.min(g.scored_at).label("first_scored_at"), func.max(g.scored_at).label("last_scored_at"),
        ).group_by(g.model_name, g.model_version, g.model_run_id),
        "bi_reconciliation_status": select(
            r.partition_day,
            func.sum(ledger).label("ledger_transactions"),
            func.sum(matched).label("matched_transactions"),
            func.sum(explained).label("explained_differences"),
            func.sum(unexplained).label("unexplained_differences"),
            case((func.sum(unexplained) > 0, "UNEXPLAINED_DIFFERENCES"), else_="RECONCILED").label("status"),
            func.min(r.first_reconciled_at).label("first_reconciled_at"),
            func.min(r.deadline).label("deadline"),
            case((late, "LATE"), else_="ON_TIME").label("timeliness"),
        ).group_by(r.partition_day),
        "bi_snapshot_status": select(
            s.period, s.snapshot_version, s.row_count, s.alerts, s.amount_base_total, s.sha256, s.supersede_reason, s.created_at,
        ).where(s.is_current == True),  # noqa: E712
    }


def _ddl(engine: Engine, select_) -> str:
    return str(select_.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))


def ensure_schema(engine: Engine) -> None:
    """Create the tables (and their partition_day index) when missing, and (re)create every view from its
    current definition, in one transaction."""
    metadata.create_all(engine, checkfirst=True)
    preparer = engine.dialect.identifier_preparer
    with engine.begin() as conn:
        existing = set(inspect(conn).get_view_names())
        for name, select_ in view_selects().items():
            if name in existing:
                conn.execute(text(f"DROP VIEW {preparer.quote(name)}"))
            conn.execute(text(f"CREATE VIEW {preparer.quote(name)} AS {_ddl(engine, select_)}"))


SERVING_TABLES = (risk_scores, alerts, dq_results, reconciliation, snapshot_summaries)
VIEWS = tuple(view_selects())
