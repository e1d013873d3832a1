"""The compliance dashboard's panels and page: pure functions from small pandas frames to Plotly figures,
the self-contained HTML page (plotly.js inlined once, no server, no external resource) and its PNG preview.

The asset (compliance_assets/serving/dashboard.py) aggregates the Delta tables with Spark into the frames
described on each builder; everything here is testable on hand-made frames.
"""

import base64
import datetime as dt
import html
import io
import json
from dataclasses import dataclass, field

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

BANDS = ("LOW", "MEDIUM", "HIGH")
BAND_COLORS = {"LOW": "#2e7d32", "MEDIUM": "#f9a825", "HIGH": "#c62828"}
STATUS_COLORS = {"OK": "#2e7d32", "WARN": "#f9a825", "FAIL": "#c62828", "EXEMPT": "#9e9e9e"}
NO_REASON, NOT_IN_SILVER, NO_BAND = "(no reason)", "(not in silver)", "(no band)"
LAYOUT = dict(template="plotly_white", height=330, margin=dict(l=60, r=20, t=30, b=60), font=dict(size=12))
CONFIG = {"displaylogo": False, "responsive": True, "modeBarButtonsToRemove": ["lasso2d", "select2d"]}


@dataclass
class Panel:
    """One panel of the page: a figure, or a `no_data` reason; `notes` is HTML shown under the title."""

    key: str  # the element id is panel-<key>, the figure's div chart-<key>
    title: str
    figure: go.Figure | None = None
    notes: str = ""
    no_data: str | None = None
    facts: dict[str, str] = field(default_factory=dict)  # label -> value, shown as a small table

    @property
    def element_id(self) -> str:
        return f"panel-{self.key}"

    @property
    def chart_id(self) -> str:
        return f"chart-{self.key}"


def _figure(*traces, **layout) -> go.Figure:
    fig = go.Figure(data=list(traces))
    fig.update_layout(**{**LAYOUT, **layout})
    return fig


def _counts(frame: pd.DataFrame, by: str, value: str = "rows") -> pd.DataFrame:
    """Sum `value` per `by`, largest first (ties by name, so the page is stable)."""
    out = frame.groupby(by, dropna=False, as_index=False)[value].sum()
    return out.sort_values([value, by], ascending=[False, True]).reset_index(drop=True)


def band_panel(bands: pd.DataFrame) -> Panel:
    """`bands`: risk_band, rows (the day's gold rows per band)."""
    panel = Panel("risk-bands", "Risk-band distribution (transactions scored)")
    if bands.empty or int(bands["rows"].sum()) == 0:
        panel.no_data = "no data: no transaction of this delivery day was scored (risk_scores_gold is empty for it)"
        return panel
    frame = bands.assign(risk_band=bands["risk_band"].fillna(NO_BAND)).groupby("risk_band", as_index=False)["rows"].sum()
    order = [b for b in BANDS if b in set(frame.risk_band)] + sorted(set(frame.risk_band) - set(BANDS))
    frame = frame.set_index("risk_band").loc[order].reset_index()
    total = int(frame["rows"].sum())
    shares = [r / total for r in frame["rows"]]
    panel.figure = _figure(
        go.Bar(
            x=frame.risk_band.tolist(), y=[int(v) for v in frame["rows"]], name="transactions",
            marker_color=[BAND_COLORS.get(b, "#607d8b") for b in frame.risk_band],
            text=[f"{int(v):,} ({s:.1%})" for v, s in zip(frame["rows"], shares)], textposition="outside",
            customdata=shares, hovertemplate="%{x}: %{y:,} transactions (%{customdata:.2%})<extra></extra>",
        ),
        yaxis_title="transactions", xaxis_title="risk band",
    )
    panel.facts = {"transactions scored": f"{total:,}"} | {f"{b} share": f"{s:.2%}" for b, s in zip(frame.risk_band, shares)}
    return panel


def alert_panels(alerts: pd.DataFrame) -> tuple[Panel, Panel]:
    """`alerts`: scenario, channel, risk_band, alerts (the day's alerts counted per combination; scenario is
    the primary reason family, channel from the silver row, NOT_IN_SILVER when it has none)."""
    by_scenario, by_channel = Panel("alerts-scenario", "Alerts by scenario"), Panel("alerts-channel", "Alerts by channel")
    if alerts.empty or int(alerts["alerts"].sum()) == 0:
        for p in (by_scenario, by_channel):
            p.no_data = "no data: no alert was raised for this delivery day (anomaly_alerts is empty for it)"
        return by_scenario, by_channel
    frame = alerts.fillna({"scenario": NO_REASON, "channel": NOT_IN_SILVER, "risk_band": NO_BAND})
    for panel, column, label in ((by_scenario, "scenario", "scenario (primary reason)"), (by_channel, "channel", "channel")):
        totals = _counts(frame, column, "alerts")
        order = totals[column].tolist()
        traces = []
        for band in [b for b in BANDS if b in set(frame.risk_band)] + sorted(set(frame.risk_band) - set(BANDS)):
            part = frame[frame.risk_band == band].groupby(column)["alerts"].sum()
            traces.append(go.Bar(x=order, y=[int(part.get(k, 0)) for k in order], name=f"{band} band", marker_color=BAND_COLORS.get(band, "#607d8b")))
        panel.figure = _figure(*traces, barmode="stack", yaxis_title="alerts", xaxis_title=label, legend=dict(orientation="h", y=1.12))
        panel.facts = {str(k): f"{int(v):,}" for k, v in zip(totals[column], totals["alerts"])}
    return by_scenario, by_channel


def trend_panel(trend: pd.DataFrame, day: str, days: int) -> Panel:
    """`trend`: day (ISO string), alerts, scored, for the `days` delivery days up to `day`; days with no scored
    transaction are gaps (not zeros): nothing was scored, so no alert could be raised."""
    panel = Panel("alert-trend", f"Alerts per delivery day, last {days} days")
    end = dt.date.fromisoformat(day)
    window = [(end - dt.timedelta(days=i)).isoformat() for i in range(days - 1, -1, -1)]
    by_day = trend.set_index("day") if not trend.empty else pd.DataFrame(columns=["alerts", "scored"])
    scored_days = [d for d in window if d in by_day.index and int(by_day.loc[d, "scored"] or 0) > 0]
    if not scored_days:
        panel.no_data = f"no data: no delivery day between {window[0]} and {day} was scored"
        return panel
    y = [int(by_day.loc[d, "alerts"] or 0) if d in scored_days else None for d in window]
    panel.figure = _figure(
        go.Scatter(x=window, y=y, mode="lines+markers", name="alerts", connectgaps=False, line=dict(color="#c62828"), hovertemplate="%{x}: %{y:,} alerts<extra></extra>"),
        yaxis=dict(title="alerts", rangemode="tozero"), xaxis_title="delivery day", xaxis=dict(type="category", tickangle=-45, nticks=15),
    )
    panel.notes = f"{len(scored_days)} of {days} days scored; gaps are days with no scored transaction."
    return panel


DQ_RULES_SHOWN = 20


def dq_panel(dq: pd.DataFrame, target: float, shown: int = DQ_RULES_SHOWN) -> Panel:
    """`dq`: rule_id, severity, checked, failed, pass_rate (the day's dq_results); the `shown` lowest rules are
    plotted, the others are counted in the notes."""
    panel = Panel("dq-pass-rates", "Data-quality pass rate per rule")
    if dq.empty:
        panel.no_data = "no data: the delivery day was not validated (no dq_results rows)"
        return panel
    ordered = dq.sort_values(["pass_rate", "rule_id"]).reset_index(drop=True)
    frame = ordered.head(shown).iloc[::-1]  # lowest on top
    colors = ["#c62828" if r < target else ("#f9a825" if r < 1.0 else "#2e7d32") for r in frame.pass_rate]
    panel.figure = _figure(
        go.Bar(
            x=[float(v) for v in frame.pass_rate], y=frame.rule_id.tolist(), orientation="h", marker_color=colors, name="pass rate",
            customdata=[[str(s), int(f), int(c)] for s, f, c in zip(frame.severity, frame.failed, frame.checked)],
            hovertemplate="%{y}: %{x:.3%} (%{customdata[1]:,} of %{customdata[2]:,} failed, %{customdata[0]})<extra></extra>",
        ),
        xaxis=dict(title="pass rate", tickformat=".0%", range=[min(0.9, float(frame.pass_rate.min())) - 0.02, 1.005]),
        height=max(330, 20 * len(frame) + 90), margin=dict(l=230, r=20, t=30, b=50),
        shapes=[dict(type="line", x0=target, x1=target, y0=0, y1=1, yref="paper", line=dict(color="#555", dash="dash"))],
    )
    low, rest = ordered.iloc[0], ordered.iloc[shown:]
    panel.notes = (
        f"Dashed line: the {target:.0%} target for critical rules. Lowest: <b>{html.escape(str(low.rule_id))}</b> {low.pass_rate:.2%} "
        f"({int(low.failed):,} of {int(low.checked):,} failed)."
        + (f" The {shown} lowest of {len(ordered)} rules are shown; the other {len(rest)} pass at {float(rest.pass_rate.min()):.2%} or more." if len(rest) else "")
    )
    panel.facts = {"rules checked": f"{len(ordered)}", "below target": f"{int((ordered.pass_rate < target).sum())}", "below 100%": f"{int((ordered.pass_rate < 1.0).sum())}"}
    return panel


def dlq_panel(reasons: pd.DataFrame, dlq_rows: int | None) -> Panel:
    """`reasons`: reason, rows (the day's DLQ rows per reason code; a row with several codes counts under each);
    `dlq_rows`: the day's DLQ rows, None when transactions_dlq does not exist yet."""
    panel = Panel("dlq-reasons", "Rejected records (DLQ) by reason code")
    if dlq_rows is None:
        panel.no_data = "no data: transactions_dlq does not exist yet (nothing was validated)"
        return panel
    if dlq_rows == 0:
        panel.no_data = "no data: no record of this delivery day was rejected (0 DLQ rows)"
        return panel
    frame = _counts(reasons.fillna({"reason": NO_REASON}), "reason")
    panel.figure = _figure(
        go.Bar(x=frame.reason.tolist(), y=[int(v) for v in frame["rows"]], marker_color="#6a1b9a", name="records", hovertemplate="%{x}: %{y:,} records<extra></extra>"),
        yaxis_title="records", xaxis_title="reason code",
    )
    panel.notes = f"{dlq_rows:,} rejected records; a record with several reason codes counts under each."
    return panel


def latency_panel(stats: dict | None, target_s: float) -> Panel:
    """`stats`: n, p50_ms, p95_ms, max_ms over the day's streamed gold rows (latency_ms set), None without gold."""
    panel = Panel("stream-latency", "Streaming latency p95 (event to score)")
    if not stats or not stats.get("n"):
        panel.no_data = "no streamed rows: no transaction of this delivery day was scored by the stream (batch only)"
        return panel
    p95 = stats["p95_ms"] / 1000.0
    top = max(target_s * 1.5, p95 * 1.1)
    panel.figure = _figure(
        go.Indicator(
            mode="gauge+number", value=round(p95, 3), number=dict(suffix=" s", valueformat=".3f"),
            gauge=dict(
                axis=dict(range=[0, top]), bar=dict(color="#c62828" if p95 >= target_s else "#2e7d32"),
                threshold=dict(line=dict(color="#333", width=3), thickness=0.8, value=target_s),
            ),
            title=dict(text=f"p95 (SLO < {target_s:g} s)"),
        ),
        height=280, margin=dict(l=30, r=30, t=50, b=10),
    )
    panel.facts = {"streamed rows": f"{int(stats['n']):,}", "p50": f"{stats['p50_ms'] / 1000:.3f} s", "p95": f"{p95:.3f} s", "max": f"{stats['max_ms'] / 1000:.3f} s", "SLO": "MET" if p95 < target_s else "BREACHED"}
    return panel


TOTALS = ("LEDGER", "SILVER", "GOLD", "MATCHED", "LATE_ARRIVAL")


def reconciliation_status(report: pd.DataFrame) -> tuple[str, int, int]:
    """(status, unexplained, explained) of a day's reconciliation_report rows (category, explained, transactions)."""
    if report.empty:
        return "NOT RECONCILED", 0, 0
    diffs = report[~report.category.isin(TOTALS)]
    unexplained = int(diffs[diffs.explained == False]["transactions"].sum())  # noqa: E712 (a nullable column)
    explained = int(diffs[diffs.explained == True]["transactions"].sum())  # noqa: E712
    return ("RECONCILED" if unexplained == 0 else "UNEXPLAINED DIFFERENCES"), unexplained, explained


def reconciliation_panel(report: pd.DataFrame, first_reconciled_at, deadline) -> Panel:
    """`report`: category, explained, transactions, amount (the day's reconciliation_report summed over currencies)."""
    panel = Panel("reconciliation", "Reconciliation with the ledger")
    status, unexplained, explained = reconciliation_status(report)
    if report.empty:
        panel.no_data = "no data: the delivery day has not been reconciled with the ledger yet (no reconciliation_report rows)"
        panel.facts = {"status": status}
        return panel
    frame = report.groupby(["category", "explained"], dropna=False, as_index=False)[["transactions", "amount"]].sum()
    totals = frame[frame.category.isin(TOTALS)].set_index("category").reindex([c for c in TOTALS if c in set(frame.category)]).reset_index()
    diffs = frame[~frame.category.isin(TOTALS)].sort_values("transactions", ascending=False)
    traces = [go.Bar(x=totals.category.tolist(), y=[int(v) for v in totals.transactions], name="totals", marker_color="#90a4ae")]
    for flag, name, color in ((True, "explained", "#1565c0"), (False, "unexplained", "#c62828")):
        part = diffs[diffs.explained == flag]  # noqa: E712
        if not part.empty:
            traces.append(go.Bar(x=part.category.tolist(), y=[int(v) for v in part.transactions], name=name, marker_color=color))
    panel.figure = _figure(*traces, yaxis=dict(title="transactions", type="log"), xaxis_title="category", legend=dict(orientation="h", y=1.12))
    on_time = first_reconciled_at is not None and deadline is not None and first_reconciled_at <= deadline
    panel.facts = {
        "status": status, "unexplained differences": f"{unexplained:,}", "explained differences": f"{explained:,}",
        "first reconciled": f"{first_reconciled_at:%Y-%m-%d %H:%M} UTC" if first_reconciled_at is not None else "-",
        "deadline": f"{deadline:%Y-%m-%d %H:%M} UTC ({'met' if on_time else 'missed'})" if deadline is not None else "-",
    }
    return panel


def drift_panel(drift: pd.DataFrame | None) -> Panel:
    """`drift`: name, value, status, warn_at, fail_at (the day's FEATURE_PSI rows of model_drift), None if the table is missing."""
    panel = Panel("drift", "Drift per feature (PSI against the model's training data)")
    if drift is None or drift.empty:
        panel.no_data = "not computed: model_drift has no rows for this delivery day (materialise model_drift for it)"
        return panel
    frame = drift.assign(value=drift.value.astype(float)).sort_values(["value", "name"], ascending=[True, False], na_position="first")
    shapes = []
    for column, color in (("warn_at", "#f9a825"), ("fail_at", "#c62828")):
        at = frame[column].dropna()
        if not at.empty:
            shapes.append(dict(type="line", x0=float(at.iloc[0]), x1=float(at.iloc[0]), y0=0, y1=1, yref="paper", line=dict(color=color, dash="dash")))
    panel.figure = _figure(
        go.Bar(
            x=[None if pd.isna(v) else float(v) for v in frame.value], y=frame.name.tolist(), orientation="h", name="PSI",
            marker_color=[STATUS_COLORS.get(s, "#607d8b") for s in frame.status], customdata=frame.status.tolist(),
            hovertemplate="%{y}: PSI %{x:.4f} (%{customdata})<extra></extra>",
        ),
        xaxis_title="population stability index", height=max(330, 18 * len(frame) + 90), margin=dict(l=200, r=20, t=30, b=50), shapes=shapes,
    )
    counts = frame.status.value_counts()
    panel.notes = "Dashed lines: warn and fail thresholds. " + ", ".join(f"{k}: {int(v)}" for k, v in counts.sort_index().items())
    return panel


def model_panel(champion: dict | None, scored_by: pd.DataFrame, unavailable: str | None = None) -> Panel:
    """`champion`: version, run_id, since (the registry's @champion), None without one; `scored_by`: model_version,
    rows (which versions scored the day's gold rows)."""
    panel = Panel("model", "Champion model")
    if unavailable:
        panel.no_data = f"no data: the model registry could not be read ({unavailable})"
    elif champion is None:
        panel.no_data = "no data: no model has the champion alias (train one, then run promote_challenger)"
    else:
        panel.facts = {"champion version": str(champion["version"]), "model": str(champion["name"]), "MLflow run": str(champion["run_id"]), "registered": str(champion["since"])}
    if not scored_by.empty:
        versions = ", ".join(f"v{v} ({int(n):,} rows)" for v, n in zip(scored_by.model_version, scored_by["rows"]))
        panel.notes = f"This day was scored by {html.escape(versions)}."
    return panel


# ---------------------------------------------------------------------------------------------------------
# The page

CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; margin: 0; background: #f4f6f8; color: #1c2530; }
header { background: #1c2f45; color: #fff; padding: 16px 24px; }
header h1 { margin: 0 0 6px 0; font-size: 22px; }
header .meta { font-size: 13px; opacity: .85; }
.kpis { display: flex; flex-wrap: wrap; gap: 12px; padding: 16px 24px 0 24px; }
.kpi { background: #fff; border-radius: 6px; padding: 10px 16px; min-width: 170px; box-shadow: 0 1px 2px rgba(0,0,0,.12); }
.kpi .label { display: block; font-size: 12px; color: #5b6b7b; text-transform: uppercase; letter-spacing: .04em; }
.kpi .value { display: block; font-size: 26px; font-weight: 600; margin-top: 2px; }
.kpi .detail { display: block; font-size: 12px; color: #5b6b7b; }
main { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 16px; padding: 16px 24px 24px 24px; }
.panel { background: #fff; border-radius: 6px; padding: 12px 16px; box-shadow: 0 1px 2px rgba(0,0,0,.12); min-width: 0; }
.panel h2 { font-size: 16px; margin: 0 0 6px 0; }
.panel .notes { font-size: 12px; color: #5b6b7b; margin: 4px 0; }
.panel table.facts { font-size: 13px; border-collapse: collapse; margin-top: 6px; }
.panel table.facts td { padding: 2px 12px 2px 0; }
.panel table.facts td:first-child { color: #5b6b7b; }
.no-data { padding: 28px 12px; text-align: center; color: #7a4b00; background: #fff8e1; border: 1px dashed #f9a825; border-radius: 4px; font-size: 14px; }
footer { font-size: 12px; color: #5b6b7b; padding: 0 24px 24px 24px; }
"""


def _facts(facts: dict[str, str]) -> str:
    if not facts:
        return ""
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in facts.items())
    return f'<table class="facts">{rows}</table>'


def render_panel(panel: Panel, include_plotlyjs: bool) -> str:
    """One panel's HTML; the first figure of the page carries plotly.js inline."""
    kind = "plotly" if panel.figure is not None and panel.no_data is None else ("no-data" if panel.no_data else "text")
    body = ""
    if panel.no_data:
        body = f'<div class="no-data">{html.escape(panel.no_data)}</div>'
    elif panel.figure is not None:
        body = pio.to_html(panel.figure, full_html=False, include_plotlyjs=include_plotlyjs, div_id=panel.chart_id, config=CONFIG, default_height=f"{panel.figure.layout.height}px")
    notes = f'<p class="notes">{panel.notes}</p>' if panel.notes else ""
    return f'<section class="panel" id="{panel.element_id}" data-kind="{kind}"><h2>{html.escape(panel.title)}</h2>{notes}{body}{_facts(panel.facts)}</section>'


@dataclass
class Kpi:
    key: str  # element id kpi-<key>
    label: str
    value: str  # plain text, as shown
    detail: str = ""


def render_page(day: str, generated_at: dt.datetime, run_id: str, kpis: list[Kpi], panels: list[Panel]) -> str:
    """The whole page: one HTML document, plotly.js inlined with the first figure, nothing loaded from elsewhere."""
    first_figure = next((p.key for p in panels if p.figure is not None and p.no_data is None), None)
    sections = "\n".join(render_panel(p, include_plotlyjs=p.key == first_figure) for p in panels)
    tiles = "\n".join(
        f'<div class="kpi" id="kpi-{k.key}"><span class="label">{html.escape(k.label)}</span><span class="value">{html.escape(k.value)}</span>'
        + (f'<span class="detail">{html.escape(k.detail)}</span>' if k.detail else "") + "</div>"
        for k in kpis
    )
    summary = json.dumps({"day": day, "run_id": run_id, "kpis": {k.key: k.value for k in kpis}, "panels": {p.key: ("no data" if p.no_data else "ok") for p in panels}})
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Compliance dashboard {html.escape(day)}</title><style>{CSS}</style></head>
<body>
<header><h1>Compliance dashboard &middot; delivery day <span id="dashboard-day">{html.escape(day)}</span></h1>
<div class="meta">Generated <span id="generated-at">{generated_at:%Y-%m-%d %H:%M:%S} UTC</span> &middot; Dagster run <span id="run-id">{html.escape(run_id)}</span></div></header>
<div class="kpis" id="kpis">
{tiles}
</div>
<main>
{sections}
</main>
<footer>Built by the compliance_dashboard asset from risk_scores_gold, anomaly_alerts, transactions_silver, dq_results, transactions_dlq,
reconciliation_report, model_drift and the MLflow model registry. Self-contained: it opens without a server.</footer>
<script type="application/json" id="dashboard-summary">{html.escape(summary, quote=False)}</script>
</body></html>
"""


def preview_png(bands: pd.DataFrame, trend: pd.DataFrame, day: str, days: int) -> bytes:
    """A 600x300 PNG for the Dagster UI: the day's band mix and the alert trend (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(6, 3), dpi=100, gridspec_kw={"width_ratios": [1, 1.6]})
    try:
        counts = bands.groupby("risk_band")["rows"].sum() if not bands.empty else pd.Series(dtype=int)
        labels = [b for b in BANDS if b in counts.index]
        if labels:
            left.bar(labels, [int(counts[b]) for b in labels], color=[BAND_COLORS[b] for b in labels])
            left.set_yscale("log")
        else:
            left.text(0.5, 0.5, "no data", ha="center", va="center", transform=left.transAxes)
        left.set_title("risk bands", fontsize=9)
        end = dt.date.fromisoformat(day)
        window = [end - dt.timedelta(days=i) for i in range(days - 1, -1, -1)]
        by_day = trend.set_index("day") if not trend.empty else pd.DataFrame(columns=["alerts", "scored"])
        y = [float(by_day.loc[d.isoformat(), "alerts"]) if d.isoformat() in by_day.index and int(by_day.loc[d.isoformat(), "scored"] or 0) > 0 else float("nan") for d in window]
        right.plot(range(len(window)), y, marker="o", markersize=3, color="#c62828")
        right.set_ylim(bottom=0)
        right.set_xticks([0, len(window) - 1], [window[0].strftime("%m-%d"), window[-1].strftime("%m-%d")])
        right.set_title(f"alerts per day ({days} d)", fontsize=9)
        for ax in (left, right):
            ax.tick_params(labelsize=7)
        fig.suptitle(f"compliance dashboard {day}", fontsize=10)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100)
        return buffer.getvalue()
    finally:
        plt.close(fig)


def preview_markdown(png: bytes) -> str:
    """Markdown that shows the PNG inline in the Dagster UI (a data URI: no file server needed)."""
    return f"![preview](data:image/png;base64,{base64.b64encode(png).decode()})"
