"""Benchmark: detection quality on data we did not generate — the platform against the handbook baseline.

Two generators, two protocols, the same rows for both models:
- generators: `handbook` (the Fraud Detection Handbook's simulator, compliance_assets/synthetic/handbook.py:
  customers and terminals on a grid, three fraud scenarios; onboarded exactly as a user would, from its
  public-dataset-shaped export through the example source mapping examples/card_export/mapping.yaml with
  reference extracts that hold only the ids) and `platform` (our own generator, compliance_assets/synthetic);
- protocols (compliance_assets/ml/evaluation.py): `train_week` (outcomes only for the week before the
  delay week) and `all_after_delay` (every transaction's outcome is decided `--delay` days after it).
  The test week follows the delay week; cards already known as compromised are removed (the handbook's
  protocol).

The platform runs its real path in a scratch lake: reference data, bronze, silver (one run over the range),
then per protocol: transaction_outcomes (the protocol's outcomes, delivered on their decision day),
ml_features_training, risk_model trained at the day before the test week (labels decided before it),
promotion, risk_scores_gold over the test week. The baseline (the handbook's features, LightGBM) trains on
exactly the platform's labelled training rows and scores the same test rows. Metrics: average precision,
ROC AUC, card precision@100, AP per fraud scenario.

    .venv/bin/python bench/detection_quality.py                       # both generators, both protocols
    .venv/bin/python bench/detection_quality.py --generators handbook --protocols train_week

Writes bench/results/detection_quality_<timestamp>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
# the handbook's calendar (2018) lies before the platform's default partitions: a deployment setting
os.environ.setdefault("PARTITIONS_START_DATE", "2018-01-01")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
MAPPING = "card_export/mapping.yaml"


def log(msg: str) -> None:
    print(f"[{dt.datetime.now():%H:%M:%S}] {msg}", flush=True)


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, lineterminator="\n")


# --- the data ------------------------------------------------------------------------------------------

def handbook_landing(args, landing: Path) -> tuple[pd.DataFrame, list[dt.date]]:
    """The handbook simulator's export, landed as a new user would: the multi-day transactions.csv for the
    example mapping, a single KYC / merchant / limits extract of ids only, one FX file and an empty watchlist."""
    from compliance_assets.ml.evaluation import handbook_frame
    from compliance_assets.synthetic.handbook import HandbookConfig, generate, write_export

    ds = generate(HandbookConfig(n_customers=args.customers, n_terminals=args.terminals, nb_days=args.days, start_date=args.start, seed=args.seed))
    paths = write_export(ds, landing / "card_export")
    frame = handbook_frame(ds)
    days = sorted(pd.to_datetime(frame.event_time).dt.date.unique())
    first = days[0].isoformat()
    customers = pd.read_csv(paths["customers"]) if "customers" in paths else ds.customers
    terminals = pd.read_csv(paths["terminals"]) if "terminals" in paths else ds.terminals
    ref = landing / "reference"
    write_csv(pd.DataFrame({"account_id": customers.CUSTOMER_ID.map(account_id)}), ref / "kyc_profiles" / f"{first}.csv")
    write_csv(pd.DataFrame({"account_id": customers.CUSTOMER_ID.map(account_id)}), ref / "account_limits" / f"{first}.csv")
    write_csv(pd.DataFrame({"merchant_id": terminals.TERMINAL_ID.map(merchant_id)}), ref / "merchant_profiles" / f"{first}.csv")
    write_csv(pd.DataFrame({"rate_date": [first], "currency": ["EUR"], "rate_to_base": [1.0]}), ref / "fx_rates" / f"{first}.csv")
    write_csv(pd.DataFrame(columns=["entity_id", "entity_type", "list_name", "entity_name", "listed_since"]), ref / "watchlists" / f"{first}.csv")
    frame["transaction_id"] = "CARD-" + frame.transaction_id  # the example mapping's prefix
    return frame, days


def account_id(customer) -> str:
    """The example mapping's account id of a handbook customer (prefix ACC, zero-padded to 8 digits)."""
    return f"ACC{int(customer):08d}"


def merchant_id(terminal) -> str:
    return f"MER{int(terminal):06d}"


def platform_landing(args, landing: Path) -> tuple[pd.DataFrame, list[dt.date]]:
    """Our own generator's days; the truth file says which transactions are fraud (a labelled scenario row)."""
    from compliance_assets.synthetic.config import SynthConfig
    from compliance_assets.synthetic.writer import generate_days

    start = dt.date.fromisoformat(args.start)
    days = [start + dt.timedelta(days=i) for i in range(args.days)]
    config = SynthConfig(seed=args.seed, events_per_day=args.events_per_day, rows_per_file=max(args.events_per_day, 1000))
    generate_days(config, landing, days)
    shutil.rmtree(landing / "outcomes", ignore_errors=True)  # the protocol decides which outcomes exist
    truth = pd.concat([pd.read_csv(p, dtype=str, keep_default_na=False) for p in sorted((landing / "truth").glob("*.csv"))])
    scenario = truth.drop_duplicates("transaction_id").set_index("transaction_id")["scenario"]
    return scenario.to_frame(), days  # joined with silver once it exists (the frame is what validation kept)


def platform_frame(spark, lake, scenario: pd.DataFrame) -> pd.DataFrame:
    from pyspark.sql import functions as F

    silver = lake.read(spark, "transactions_silver").select(
        "transaction_id", "event_time", "account_id", "merchant_id", F.col("amount_base").cast("double").alias("amount")
    ).toPandas()
    s = silver.merge(scenario, left_on="transaction_id", right_index=True, how="left")
    s["scenario"] = s["scenario"].fillna("")
    return pd.DataFrame({
        "transaction_id": s.transaction_id, "event_time": s.event_time, "customer_id": s.account_id,
        # transfers have no terminal: each its own, so terminal windows hold nothing for them
        "terminal_id": s.merchant_id.fillna("none:" + s.transaction_id), "amount": s.amount,
        "label": (s.scenario != "").astype(np.int64), "scenario": s.scenario,
    })


# --- the platform's path ---------------------------------------------------------------------------------

def materialize_range(assets, root: Path, first: str, last: str, run_config: dict | None = None, selection=None) -> float:
    from dagster import DagsterInstance, materialize

    from tests.conftest import make_resources

    started = time.perf_counter()
    result = materialize(
        assets, selection=selection, resources=make_resources(root), instance=DagsterInstance.ephemeral(), run_config=run_config or {},
        tags={RANGE_START: first, RANGE_END: last}, raise_on_error=True,
    )
    assert result.success
    return time.perf_counter() - started


def ingest(root: Path, days: list[dt.date], mapping: str | None) -> float:
    from compliance_assets.ingest.bronze import transactions_bronze
    from compliance_assets.ingest.silver import validate_transactions
    from compliance_assets.ingest.reference_data import reference_assets

    config = {"ops": {"transactions_bronze": {"config": {"source_mapping": mapping}}}} if mapping else None
    return materialize_range([*reference_assets, transactions_bronze, validate_transactions], root, str(days[0]), str(days[-1]), config)


def deliver_outcomes(outcomes: pd.DataFrame, landing: Path) -> None:
    """The protocol's outcomes as the platform receives them: one file per decision day."""
    shutil.rmtree(landing / "outcomes", ignore_errors=True)
    out = outcomes.assign(decision_time=pd.to_datetime(outcomes.decision_time))
    for day, rows in out.groupby(out.decision_time.dt.date):
        write_csv(rows.assign(decision_time=rows.decision_time.dt.strftime("%Y-%m-%dT%H:%M:%SZ"))[["transaction_id", "label", "decision_time"]], landing / "outcomes" / f"{day}.csv")


def platform_scores(spark, root: Path, days: list[dt.date], test_start: dt.date, test_days: int) -> tuple[pd.DataFrame, pd.DataFrame, dict, dict]:
    """(the model's labelled training rows, the test week's gold scores, MLflow metrics, step seconds)."""
    from dagster import DagsterInstance

    from compliance_assets.ml.features_training import ml_features_training
    from compliance_assets.ml.gold import risk_scores_gold
    from compliance_assets.ml.outcomes import transaction_outcomes
    from compliance_assets.ml.registry import promote_challenger
    from compliance_assets.ml.training import TRAINING_WINDOW_DAYS, load_training_frame, risk_model
    from tests.conftest import make_resources

    seconds = {}
    train_day = test_start - dt.timedelta(days=1)
    first_feature_day = max(days[0], train_day - dt.timedelta(days=TRAINING_WINDOW_DAYS - 1))
    test_last = test_start + dt.timedelta(days=test_days - 1)
    seconds["outcomes"] = materialize_range([transaction_outcomes], root, str(days[0]), str(days[-1]))
    seconds["ml_features_training"] = materialize_range([ml_features_training], root, str(first_feature_day), str(test_last))
    seconds["risk_model"] = materialize_range([risk_model], root, str(train_day), str(train_day))
    resources = make_resources(root)
    started = time.perf_counter()
    promoted = promote_challenger.execute_in_process(
        run_config={"ops": {"promote_challenger_op": {"config": {"approver": "bench", "reason": "detection-quality bench"}}}},
        resources={k: resources[k] for k in ("spark", "lake", "model_registry")}, instance=DagsterInstance.ephemeral(),
    )
    assert promoted.success
    seconds["promotion"] = time.perf_counter() - started
    seconds["risk_scores_gold"] = materialize_range([risk_scores_gold], root, str(test_start), str(test_last))

    lake, registry = resources["lake"], resources["model_registry"]
    version = registry.version_by_alias("champion")
    run = registry.client().get_run(version.run_id)
    cutoff = dt.datetime.combine(test_start, dt.time())
    frame, *_ = load_training_frame(spark, lake, first_feature_day, train_day, cutoff)
    labelled = frame[frame.label.notna()][["transaction_id", "label"]]
    gold = lake.read(spark, "risk_scores_gold").select("transaction_id", "risk_score").toPandas()
    return labelled, gold, {**run.data.metrics, **{k: v for k, v in run.data.params.items() if k.startswith("label_delay") or k == "absent_features"}}, seconds


def evaluate_protocol(args, spark, generator: str, base: Path, frame: pd.DataFrame, days: list[dt.date], protocol: str) -> dict:
    from compliance_assets.ml import evaluation as ev

    test_start = days[0] + dt.timedelta(days=args.test_start_day)
    root = base.parent / f"{generator}-{protocol}"
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(base, root)
    outcomes = ev.outcomes_table(frame, args.delay, protocol, pd.Timestamp(test_start))
    deliver_outcomes(outcomes, root / "landing")
    log(f"{generator} / {protocol}: {len(outcomes)} outcomes ({int(outcomes.label.sum())} frauds); platform path ...")
    labelled, gold, mlflow_metrics, seconds = platform_scores(spark, root, days, test_start, args.test_days)
    _, test = ev.split(frame, pd.Timestamp(test_start), delay_days=args.delay, test_days=args.test_days, protocol=protocol)

    # the baseline: the handbook's features from the same outcomes, trained on the platform's labelled rows
    started = time.perf_counter()
    feats = ev.handbook_features(frame, outcomes, args.delay).set_index("transaction_id")
    train_rows = feats.loc[labelled.transaction_id].assign(label=labelled.label.astype(int).to_numpy())
    baseline = ev.train_baseline(train_rows.reset_index(), seed=args.seed)
    base_scores = ev.score_baseline(baseline, feats.loc[test.transaction_id].reset_index())
    baseline_seconds = time.perf_counter() - started

    scores = test.transaction_id.map(gold.set_index("transaction_id").risk_score)
    unscored = int(scores.isna().sum())
    platform = ev.evaluate(test, scores.fillna(0.0).to_numpy())
    handbook = ev.evaluate(test, base_scores)
    ratio = platform["average_precision"] / handbook["average_precision"]
    log(
        f"{generator} / {protocol}: AP platform {platform['average_precision']:.3f} vs baseline {handbook['average_precision']:.3f} "
        f"(x{ratio:.2f}); ROC AUC {platform['roc_auc']:.3f} vs {handbook['roc_auc']:.3f}; CP@100 {platform['card_precision_at_100']:.3f} vs "
        f"{handbook['card_precision_at_100']:.3f}; per scenario platform {fmt(platform['per_scenario_ap'])} baseline {fmt(handbook['per_scenario_ap'])}"
    )
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return {
        "test_start": str(test_start), "training_rows_labelled": len(labelled), "training_positives": int(labelled.label.sum()),
        "test_rows": len(test), "test_unscored": unscored, "platform": platform, "baseline": handbook, "ap_ratio": ratio,
        "card_precision_at_100_ratio": (platform["card_precision_at_100"] / handbook["card_precision_at_100"]) if handbook["card_precision_at_100"] else None,
        "platform_mlflow": mlflow_metrics, "platform_step_seconds": seconds, "baseline_seconds": baseline_seconds,
    }


def fmt(per_scenario: dict) -> str:
    return "{" + ", ".join(f"{k}: {v:.3f}" for k, v in per_scenario.items()) + "}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--generators", default="handbook,platform")
    p.add_argument("--protocols", default="train_week,all_after_delay")
    p.add_argument("--days", type=int, default=60)
    p.add_argument("--start", default="2018-04-01", help="First simulated day (the handbook's).")
    p.add_argument("--customers", type=int, default=2000, help="Handbook: customers (cards).")
    p.add_argument("--terminals", type=int, default=4000, help="Handbook: terminals.")
    p.add_argument("--events-per-day", type=int, default=4000, help="Platform generator: events per day.")
    p.add_argument("--test-start-day", type=int, default=46, help="Offset of the test week's first day.")
    p.add_argument("--test-days", type=int, default=7)
    p.add_argument("--delay", type=int, default=7, help="Days from a transaction to its outcome (the protocol's delay week).")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--work-dir", default=None)
    p.add_argument("--keep", action="store_true")
    p.add_argument("--results-dir", default=str(REPO / "bench" / "results"))
    args = p.parse_args(argv)

    os.environ.setdefault("SPARK_SHUFFLE_PARTITIONS", "4")
    from resources.spark import start_session

    work = Path(tempfile.mkdtemp(prefix="bench-detection-", dir=args.work_dir))
    spark = start_session()
    results = {"started": dt.datetime.now().isoformat(timespec="seconds"), "args": vars(args), "runs": {}}
    try:
        for generator in args.generators.split(","):
            base = work / generator / "base"
            landing = base / "landing"
            log(f"{generator}: generating {args.days} days ...")
            started = time.perf_counter()
            if generator == "handbook":
                frame, days = handbook_landing(args, landing)
                mapping = MAPPING
            else:
                scenario, days = platform_landing(args, landing)
                mapping = None
            generated = time.perf_counter() - started
            log(f"{generator}: ingesting {days[0]}..{days[-1]} in one run ...")
            ingest_seconds = ingest(base, days, mapping)
            if generator == "platform":
                from tests.conftest import make_resources

                frame = platform_frame(spark, make_resources(base)["lake"], scenario)
            log(f"{generator}: {len(frame)} transactions, fraud rate {frame.label.mean():.4f}; ingest {ingest_seconds:.0f} s")
            results["runs"][generator] = {"generation_seconds": generated, "ingest_seconds": ingest_seconds, "transactions": len(frame), "fraud_rate": float(frame.label.mean())}
            for protocol in args.protocols.split(","):
                results["runs"][generator][protocol] = evaluate_protocol(args, spark, generator, base, frame, days, protocol)
    finally:
        spark.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"kept {work}")
    out = Path(args.results_dir) / f"detection_quality_{dt.datetime.now():%Y%m%dT%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print("\n| generator | protocol | AP platform | AP baseline | ratio | ROC AUC platform / baseline | CP@100 platform / baseline |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for generator, run in results["runs"].items():
        for protocol in args.protocols.split(","):
            r = run.get(protocol)
            if r:
                print(
                    f"| {generator} | {protocol} | {r['platform']['average_precision']:.3f} | {r['baseline']['average_precision']:.3f} | {r['ap_ratio']:.2f} | "
                    f"{r['platform']['roc_auc']:.3f} / {r['baseline']['roc_auc']:.3f} | {r['platform']['card_precision_at_100']:.3f} / {r['baseline']['card_precision_at_100']:.3f} |"
                )
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
