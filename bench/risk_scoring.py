"""Benchmark: the risk model's detection quality on later days, and scoring throughput on one big day.

A. Quality (time-based split). Generates --days synthetic days of --history-events events from
   --start; each day is ingested (reference data, bronze, silver) with its confirmed outcomes in
   one Dagster run, and the first --train-days also get their ml_features_training rows. The
   risk_model asset is materialised for partition (last training day + 10 days), so every outcome
   of the training days is decided by its label cut-off; the test days have no rows in
   ml_features_training at that point, so nothing of them can reach the training set. The
   challenger is promoted (approver "benchmark"), then risk_scores_gold is materialised for every
   test day and ALL its gold rows are compared with the generator's ground truth
   (landing/truth/<day>.csv: a non-empty scenario = positive): average precision, ROC AUC, and
   recall / precision / rate of the alerts (HIGH band). Baseline: a plain LightGBM (TrainingParams'
   trees, leaves and depth) on raw fields only (amount_base, hour of day, channel one-hot,
   mcc_code as a number, country == home_country, latitude, longitude), trained on the same
   confirmed outcomes (decided before the same cut-off) and evaluated on the same rows and truth.

B. Throughput. Generates one day of --events events (--score-day, default the day after the last
   history day), ingests it (reference data, then bronze + silver), then times materialising
   risk_scores_gold for it with part A's champion (the Dagster step: features, TreeSHAP scoring,
   MERGE) and, outside Dagster in the same Spark session, the features alone and features +
   score_frame written to the `noop` sink (scoring cost without the MERGE). Peak RSS of the Python
   process, the Spark driver JVM and the Python workers that score (VmHWM, reset before part B
   where the kernel allows it).

    .venv/bin/python bench/risk_scoring.py                                   # both parts, 21 x 20k history, 5M scored
    .venv/bin/python bench/risk_scoring.py --skip-throughput                 # quality only
    .venv/bin/python bench/risk_scoring.py --skip-quality --keep-landing     # throughput with the champion of an earlier part A
    .venv/bin/python bench/risk_scoring.py --days 10 --train-days 6 --history-events 5000 --events 100000   # smoke scale

The Spark session is built once (resources.spark.spark_conf(); SPARK_MASTER overrides local[*])
and Dagster's PySparkResource reuses it. Results: bench/results/risk_scoring_<events>_<timestamp>.json.
"""

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.memory import jvm_pids, peak_rss_mb, python_worker_pids, reset_peak_rss  # noqa: E402
from resources import resources_for_lake  # noqa: E402

TRAIN_PARTITION_OFFSET_DAYS = 10  # outcomes are decided 1-10 days after the transaction (synthetic writer)
APPROVER = "benchmark"


def memory_figures() -> dict:
    workers = [peak_rss_mb(p) for p in python_worker_pids()]
    return {
        "peak_rss_python_mb": round(peak_rss_mb(os.getpid())),
        "peak_rss_spark_jvm_mb": round(max((peak_rss_mb(p) for p in jvm_pids()), default=0.0)),
        "peak_rss_python_worker_max_mb": round(max(workers, default=0.0)),
        "python_worker_processes": len(workers),
    }


# --- setup ----------------------------------------------------------------------------------
def ensure_day(config, landing: Path, day: dt.date, keep: bool) -> tuple[float, bool]:
    """Generate a day's landing data unless --keep-landing and the same seed and size are there."""
    from compliance_assets.synthetic import generate_day

    manifest = landing / "transactions" / f"event_date={day}" / "_manifest.json"
    truth = landing / "truth" / f"{day}.csv"
    if keep and manifest.exists() and truth.exists():
        m = json.loads(manifest.read_text())
        if m.get("events_per_day") == config.events_per_day and m.get("seed") == config.seed:
            return 0.0, True
    t0 = time.perf_counter()
    generate_day(config, landing, day)
    return time.perf_counter() - t0, False


class Bench:
    """One Spark session, one ephemeral Dagster instance and one resource dict for every run."""

    def __init__(self, args, spark):
        from dagster import DagsterInstance

        self.args, self.spark = args, spark
        self.lake = Path(args.lake)
        self.instance = DagsterInstance.ephemeral()
        self.resources = resources_for_lake(self.lake, salt="bench-salt")
        self.loggers = {} if args.verbose else {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}

    def materialize(self, assets, day: str, selection=None, run_config=None):
        from dagster import materialize

        t0 = time.perf_counter()
        result = materialize(
            assets, partition_key=day, resources=self.resources, instance=self.instance, selection=selection,
            run_config={**(run_config or {}), **self.loggers}, raise_on_error=True,
        )
        return result, time.perf_counter() - t0

    def promote(self):
        from compliance_assets.ml.registry import promote_challenger

        t0 = time.perf_counter()
        result = promote_challenger.execute_in_process(
            run_config={"ops": {"promote_challenger_op": {"config": {"approver": APPROVER, "reason": "bench/risk_scoring.py"}}}, **self.loggers},
            resources={k: self.resources[k] for k in ("spark", "lake", "model_registry")}, instance=self.instance, raise_on_error=True,
        )
        return result, time.perf_counter() - t0


def step_seconds(*results) -> dict[str, float]:
    return {
        e.step_key: round(e.event_specific_data.duration_ms / 1000, 2)
        for r in results for e in r.all_events if e.event_type_value == "STEP_SUCCESS"
    }


def days_from(start: dt.date, n: int) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range(n)]


def log(msg: str) -> None:
    print(f"[{dt.datetime.now():%H:%M:%S}] {msg}", flush=True)


# --- part A: quality ------------------------------------------------------------------------
RAW_FEATURES_DOC = "amount_base, hour_of_day, channel one-hot, mcc_code (number), in_home_country, latitude, longitude"


def raw_fields(silver):
    """The baseline's raw fields of silver rows (keyed by transaction_id, event_time)."""
    from pyspark.sql import functions as F

    return silver.select(
        "transaction_id", "event_time",
        F.col("amount_base").cast("double").alias("amount_base"),
        F.hour("event_time").cast("double").alias("hour_of_day"),
        "channel",
        F.col("mcc_code").cast("double").alias("mcc_code"),
        (F.col("country") == F.col("home_country")).cast("double").alias("in_home_country"),
        F.col("latitude").cast("double").alias("latitude"),
        F.col("longitude").cast("double").alias("longitude"),
    )


def raw_matrix(df):
    import numpy as np

    from compliance_assets.ml.model_features import CHANNELS

    cols = {c: df[c].astype("float64") for c in ("amount_base", "hour_of_day", "mcc_code", "in_home_country", "latitude", "longitude")}
    cols.update({f"channel_{c.lower()}": (df["channel"] == c).astype("float64") for c in CHANNELS})
    names = list(cols)
    return np.column_stack([cols[n].to_numpy(dtype=np.float64, na_value=np.nan) for n in names]), names


def read_truth(landing: Path, days: list[dt.date]):
    """transaction_id -> scenario ('' = normal) over the days' truth files (any labelled line wins)."""
    import pandas as pd

    frames = [pd.read_csv(landing / "truth" / f"{d}.csv", dtype=str, keep_default_na=False, usecols=["transaction_id", "scenario"]) for d in days]
    truth = pd.concat(frames, ignore_index=True)
    return truth.sort_values("scenario", ascending=False, kind="stable").drop_duplicates("transaction_id").set_index("transaction_id")["scenario"]


def ranking_metrics(y, score) -> dict:
    from sklearn.metrics import average_precision_score, roc_auc_score

    return {"average_precision": float(average_precision_score(y, score)), "roc_auc": float(roc_auc_score(y, score))}


def at_alerts(y, alerted) -> dict:
    return {
        "alerts": int(alerted.sum()),
        "alert_rate": float(alerted.mean()),
        "recall": float(alerted[y == 1].mean()) if (y == 1).any() else 0.0,
        "precision": float(y[alerted].mean()) if alerted.any() else 0.0,
        "recall_ceiling": min(1.0, float(alerted.sum() / max(1, (y == 1).sum()))),  # alerts / positives: the best any ranking could do
    }


def top_n(score, n: int):
    import numpy as np

    alerted = np.zeros(len(score), dtype=bool)
    alerted[np.argsort(-score, kind="stable")[:n]] = True
    return alerted


def train_baseline(X, y):
    import lightgbm as lgb

    from compliance_assets.ml.risk_model import TrainingParams

    p = TrainingParams()
    params = {
        "objective": "binary", "num_leaves": p.num_leaves, "max_depth": p.max_depth, "learning_rate": p.learning_rate,
        "min_data_in_leaf": p.min_data_in_leaf, "seed": p.seed, "deterministic": True, "force_row_wise": True, "num_threads": 2, "verbose": -1,
    }
    return lgb.train(params, lgb.Dataset(X, label=y), num_boost_round=p.num_trees), {k: params[k] for k in ("num_leaves", "max_depth", "learning_rate", "min_data_in_leaf")} | {"num_trees": p.num_trees}


def quality(bench: Bench) -> dict:
    import numpy as np
    from pyspark.sql import functions as F

    from compliance_assets.ingest.bronze import transactions_bronze
    from compliance_assets.ingest.silver import validate_transactions
    from catalog import TRAINING_FEATURES as FEATURES_TABLE
    from compliance_assets.ml.features_training import ml_features_training
    from catalog import GOLD as GOLD_TABLE
    from compliance_assets.ml.gold import risk_scores_gold
    from compliance_assets.ml.outcomes import transaction_outcomes
    from compliance_assets.ml.training import TRAINING_WINDOW_DAYS, risk_model
    from compliance_assets.ingest.reference_data import reference_assets
    from compliance_assets.synthetic import SynthConfig

    args, spark, lake = bench.args, bench.spark, bench.lake
    if not 0 < args.train_days < args.days:
        raise SystemExit(f"--train-days must be in 1..{args.days - 1} (some days must remain to test on)")
    days = days_from(dt.date.fromisoformat(args.start), args.days)
    train_days, test_days = days[: args.train_days], days[args.train_days :]
    train_partition = train_days[-1] + dt.timedelta(days=TRAIN_PARTITION_OFFSET_DAYS)
    cutoff = dt.datetime.combine(train_partition + dt.timedelta(days=1), dt.time())  # as risk_model sets it
    window_first = train_partition - dt.timedelta(days=TRAINING_WINDOW_DAYS - 1)
    config = SynthConfig(seed=args.seed, events_per_day=args.history_events)
    timings: dict = {}

    # a fresh lake: Delta tables and the MLflow store (landing is kept for --keep-landing)
    shutil.rmtree(lake / "tables", ignore_errors=True)
    shutil.rmtree(lake / "mlflow", ignore_errors=True)
    bench.resources = resources_for_lake(lake, salt="bench-salt")

    t0, reused = time.perf_counter(), 0
    for d in days:
        _, was_reused = ensure_day(config, lake / "landing", d, args.keep_landing)
        reused += was_reused
    timings["generation_seconds"] = round(time.perf_counter() - t0, 1)
    log(f"landing: {len(days)} days of {args.history_events} events ({reused} reused) in {timings['generation_seconds']}s")

    # ingest + outcomes every day; training features only for the training days (no test-day rows
    # in ml_features_training before the model is trained: its 28-day window would include them)
    ingest = [*reference_assets, transactions_bronze, validate_transactions, transaction_outcomes]
    per_day = {}
    t0 = time.perf_counter()
    for d in days:
        assets = [*ingest, ml_features_training] if d in train_days else ingest
        _, seconds = bench.materialize(assets, str(d))
        per_day[str(d)] = round(seconds, 1)
        log(f"ingest {d}{' + ml_features_training' if d in train_days else ''}: {seconds:.1f}s")
    timings["ingest_seconds_total"] = round(time.perf_counter() - t0, 1)
    timings["ingest_seconds_per_day"] = per_day

    feature_days = sorted({str(r.ingest_date) for r in spark.read.format("delta").load(f"{lake}/tables/{FEATURES_TABLE}").select("ingest_date").distinct().collect()})
    assert feature_days == [str(d) for d in train_days], f"ml_features_training holds {feature_days}, expected only the training days"

    result, seconds = bench.materialize([risk_model], str(train_partition))
    timings["training_seconds"] = round(seconds, 1)
    meta = {k: v.value for k, v in result.asset_materializations_for_node("risk_model")[0].metadata.items()}
    log(f"risk_model {train_partition} (window {window_first}..{train_partition}, labels decided before {cutoff}): v{meta['model_version']} in {seconds:.1f}s")
    _, seconds = bench.promote()
    timings["promotion_seconds"] = round(seconds, 1)
    champion = bench.resources["model_registry"].version_by_alias("champion")
    assert champion is not None and str(champion.version) == str(meta["model_version"])
    log(f"promoted v{champion.version} to champion ({seconds:.1f}s)")

    per_day = {}
    t0 = time.perf_counter()
    for d in test_days:
        _, seconds = bench.materialize([risk_scores_gold], str(d))
        per_day[str(d)] = round(seconds, 1)
        log(f"risk_scores_gold {d}: {seconds:.1f}s")
    timings["scoring_seconds_total"] = round(time.perf_counter() - t0, 1)
    timings["scoring_seconds_per_day"] = per_day

    # --- evaluation --------------------------------------------------------------------------
    t0 = time.perf_counter()
    silver = spark.read.format("delta").load(f"{lake}/tables/transactions_silver")
    test_dates = [F.lit(str(d)).cast("date") for d in test_days]
    gold = (
        spark.read.format("delta").load(f"{lake}/tables/{GOLD_TABLE}")
        .where(F.col("ingest_date").isin(test_dates))
        .select("transaction_id", "event_time", "ingest_date", "risk_score", "risk_band", "model_version")
    )
    test = gold.join(raw_fields(silver.where(F.col("ingest_date").isin(test_dates))), ["transaction_id", "event_time"], "left").toPandas()
    silver_test_rows = silver.where(F.col("ingest_date").isin(test_dates)).count()
    assert set(test["model_version"]) == {str(champion.version)}, set(test["model_version"])

    labelled = (
        spark.read.format("delta").load(f"{lake}/tables/{FEATURES_TABLE}")
        .where(F.col("ingest_date").isin([F.lit(str(d)).cast("date") for d in train_days]))
        .where(F.col("label").isNotNull() & (F.col("label_decision_time") < F.lit(cutoff)))
        .select("transaction_id", "event_time", "label")
    )
    train_rows = labelled.join(raw_fields(silver), ["transaction_id", "event_time"], "inner").toPandas()
    n_labelled = labelled.count()
    assert len(train_rows) == n_labelled, f"{n_labelled} labelled rows but {len(train_rows)} found in silver"

    truth = read_truth(lake / "landing", test_days)
    scenario = test["transaction_id"].map(truth)
    not_in_truth = int(scenario.isna().sum())
    scenario = scenario.fillna("")
    y = (scenario != "").to_numpy().astype(int)
    model_score = test["risk_score"].to_numpy(dtype=np.float64)
    alerted = (test["risk_band"] == "HIGH").to_numpy()

    X_train, names = raw_matrix(train_rows)
    booster, baseline_params = train_baseline(X_train, train_rows["label"].to_numpy().astype(int))
    X_test, _ = raw_matrix(test)
    base_score = booster.predict(X_test)
    base_alerted = top_n(base_score, int(alerted.sum()))

    model_fig = {**ranking_metrics(y, model_score), **at_alerts(y, alerted)}
    base_fig = {**ranking_metrics(y, base_score), "at_model_alert_count": at_alerts(y, base_alerted)}
    by_scenario = {
        s: {"positives": int((scenario == s).sum()), "model_recall": float(alerted[(scenario == s).to_numpy()].mean()),
            "baseline_recall_at_same_alert_count": float(base_alerted[(scenario == s).to_numpy()].mean())}
        for s in sorted(set(scenario) - {""})
    }
    timings["evaluation_seconds"] = round(time.perf_counter() - t0, 1)

    return {
        "config": {
            "seed": args.seed, "history_events_per_day": args.history_events, "days": [str(days[0]), str(days[-1])],
            "training_days": [str(train_days[0]), str(train_days[-1])], "test_days": [str(test_days[0]), str(test_days[-1])],
            "risk_model_partition": str(train_partition), "risk_model_window": f"{window_first}..{train_partition}",
            "label_cutoff": cutoff.isoformat(), "anomaly_rate": config.anomaly_rate, "outcome_sample_rate": config.outcome_sample_rate,
            "champion_version": str(champion.version), "champion_run_id": champion.run_id,
            "baseline_features": names, "baseline_params": baseline_params,
            "baseline_training_rows": "every confirmed outcome of the training days decided before label_cutoff (the model's trees use the earliest 60% by event time, 20% calibrates, 20% is its holdout)",
        },
        "counts": {
            "training_outcomes": n_labelled, "training_positives": int(train_rows["label"].sum()),
            "model_tree_outcomes": int(meta.get("training_outcomes", -1)), "model_tree_positives": int(meta.get("training_positives", -1)),
            "test_rows_gold": len(test), "test_rows_silver": silver_test_rows, "test_positives": int(y.sum()),
            "test_positive_rate": float(y.mean()), "test_rows_not_in_truth": not_in_truth,
        },
        "model_own_holdout": {k: meta[k] for k in ("average_precision", "roc_auc", "recall_at_budget", "precision_at_budget", "alert_rate", "holdout_outcomes", "holdout_positives") if k in meta},
        "model": model_fig,
        "baseline_raw_lightgbm": base_fig,
        "recall_by_scenario": by_scenario,
        "timings": timings,
    }


# --- part B: throughput ---------------------------------------------------------------------
def throughput(bench: Bench, score_day: dt.date) -> dict:
    from dagster import AssetSelection
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    from compliance_assets.ingest.bronze import transactions_bronze
    from compliance_assets.ingest.silver import validate_transactions
    from compliance_assets.ml.features_training import delivery_features
    from catalog import GOLD as GOLD_TABLE
    from compliance_assets.ml.gold import risk_scores_gold
    from compliance_assets.ml.scoring import score_frame
    from compliance_assets.ingest.reference_data import reference_assets
    from compliance_assets.synthetic import SynthConfig

    args, spark, lake = bench.args, bench.spark, bench.lake
    registry, lake_res = bench.resources["model_registry"], bench.resources["lake"]
    if registry.version_by_alias("champion") is None:
        raise SystemExit(f"No champion model in {registry.tracking_uri}: run part A first (without --skip-quality) on the same --lake.")
    day = str(score_day)

    gen_seconds, reused = ensure_day(SynthConfig(seed=args.seed, events_per_day=args.events), lake / "landing", score_day, args.keep_landing)
    manifest = json.loads((lake / "landing" / "transactions" / f"event_date={day}" / "_manifest.json").read_text())
    log(f"landing {day}: {manifest['total_lines']} lines, {manifest['accounts']} accounts ({'reused' if reused else f'generated in {gen_seconds:.1f}s'})")

    refs, ref_seconds = bench.materialize(reference_assets, day)
    ingest, ingest_seconds = bench.materialize(
        [*reference_assets, transactions_bronze, validate_transactions], day, selection=AssetSelection.assets(transactions_bronze, validate_transactions)
    )
    log(f"ingest {day}: reference {ref_seconds:.1f}s, bronze + silver {ingest_seconds:.1f}s")
    silver_rows = lake_res.read(spark, "transactions_silver").where(F.col("ingest_date") == F.lit(day).cast("date")).count()

    # score the day from scratch every time (a re-run would otherwise MERGE onto identical rows)
    gold_existed = lake_res.table_exists(spark, GOLD_TABLE)
    if gold_existed:
        DeltaTable.forPath(spark, lake_res.table_path(GOLD_TABLE)).delete(F.col("ingest_date") == F.lit(day).cast("date"))
    reset_ok = reset_peak_rss([os.getpid(), *jvm_pids(), *python_worker_pids()])

    result, gold_run_seconds = bench.materialize([risk_scores_gold], day)
    gold_step_seconds = step_seconds(result)["risk_scores_gold"]
    gold = lake_res.read(spark, GOLD_TABLE).where(F.col("ingest_date") == F.lit(day).cast("date"))
    rows = gold.count()
    bands = {r.risk_band: r["count"] for r in gold.groupBy("risk_band").count().collect()}
    log(f"risk_scores_gold {day}: {rows} rows, step {gold_step_seconds:.1f}s, run {gold_run_seconds:.1f}s")

    # the same work outside Dagster, without the MERGE: features alone, then features + scoring
    t0 = time.perf_counter()
    version, model = registry.champion()
    load_seconds = time.perf_counter() - t0
    features = delivery_features(spark, lake_res, day, model.label_delay_days, ("dq_status",))
    t0 = time.perf_counter()
    features.write.format("noop").mode("overwrite").save()
    features_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    score_frame(features, model).write.format("noop").mode("overwrite").save()
    scoring_seconds = time.perf_counter() - t0
    log(f"noop: features {features_seconds:.1f}s, features + score_frame {scoring_seconds:.1f}s")

    cores = spark.sparkContext.defaultParallelism
    return {
        "score_day": day, "events": args.events, "lines": manifest["total_lines"], "accounts": manifest["accounts"],
        "champion_version": str(version.version),
        "generation_seconds": round(gen_seconds, 1), "landing_reused": reused,
        "reference_data_seconds": round(ref_seconds, 1), "bronze_to_silver_seconds": round(ingest_seconds, 1),
        "silver_rows": silver_rows,
        "gold_table_existed": gold_existed,
        "gold_step_seconds": gold_step_seconds, "gold_run_seconds": round(gold_run_seconds, 1),
        "rows_scored": rows, "bands": bands,
        "rows_per_second": round(rows / gold_step_seconds), "rows_per_second_per_core": round(rows / gold_step_seconds / cores),
        "champion_load_seconds": round(load_seconds, 2),
        "noop_features_seconds": round(features_seconds, 1),
        "noop_features_and_scoring_seconds": round(scoring_seconds, 1),
        "noop_scoring_rows_per_second": round(rows / scoring_seconds),
        "noop_scoring_rows_per_second_per_core": round(rows / scoring_seconds / cores),
        "noop_passes_run_after_gold_step": True,
        "scoring_only_seconds_estimate": round(scoring_seconds - features_seconds, 1),
        "merge_and_rest_seconds_estimate": round(gold_step_seconds - scoring_seconds, 1),
        "cores": cores,
        "peak_rss_reset_before_part_b": reset_ok,
        **memory_figures(),
    }


# --- report ---------------------------------------------------------------------------------
def print_quality(q: dict) -> None:
    c, n, m, b = q["config"], q["counts"], q["model"], q["baseline_raw_lightgbm"]
    print("\n=== A. detection quality (time-based split) ===")
    print(f"history {c['days'][0]}..{c['days'][1]} x {c['history_events_per_day']} events/day (seed {c['seed']}, anomaly_rate {c['anomaly_rate']}, outcome_sample_rate {c['outcome_sample_rate']})")
    print(f"training days {c['training_days'][0]}..{c['training_days'][1]}, risk_model partition {c['risk_model_partition']} (labels decided before {c['label_cutoff']}), champion v{c['champion_version']}")
    print(f"test days {c['test_days'][0]}..{c['test_days'][1]}")
    print(f"training outcomes {n['training_outcomes']} ({n['training_positives']} positive); the model's trees: {n['model_tree_outcomes']} ({n['model_tree_positives']} positive)")
    print(f"test rows {n['test_rows_gold']} gold / {n['test_rows_silver']} silver, {n['test_positives']} positive ({n['test_positive_rate']:.4%}), {n['test_rows_not_in_truth']} not in truth")
    ba = b["at_model_alert_count"]
    print(f"{'':34}{'risk model':>14}{'raw LightGBM':>14}")
    print(f"{'average precision':34}{m['average_precision']:>14.4f}{b['average_precision']:>14.4f}")
    print(f"{'ROC AUC':34}{m['roc_auc']:>14.4f}{b['roc_auc']:>14.4f}")
    print(f"{'alerts (model: HIGH band)':34}{m['alerts']:>14}{ba['alerts']:>14}")
    print(f"{'alert rate':34}{m['alert_rate']:>14.4%}{ba['alert_rate']:>14.4%}")
    print(f"{'recall at the alerts':34}{m['recall']:>14.4f}{ba['recall']:>14.4f}")
    print(f"{'precision at the alerts':34}{m['precision']:>14.4f}{ba['precision']:>14.4f}")
    print(f"{'recall ceiling (alerts/positives)':34}{m['recall_ceiling']:>14.4f}{ba['recall_ceiling']:>14.4f}")
    print("(baseline alerts = its top-N with N = the model's alert count)")
    for s, f in q["recall_by_scenario"].items():
        print(f"  recall {s:30}{f['model_recall']:>14.3f}{f['baseline_recall_at_same_alert_count']:>14.3f}   ({f['positives']} positives)")
    if q["model_own_holdout"]:
        print("model's own holdout (MLflow): " + ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in q["model_own_holdout"].items()))
    print("timings: " + json.dumps({k: v for k, v in q["timings"].items() if not isinstance(v, dict)}))


def print_throughput(t: dict) -> None:
    print("\n=== B. scoring throughput ===")
    print(f"{t['score_day']}: {t['events']} events -> {t['silver_rows']} silver rows, {t['accounts']} accounts, champion v{t['champion_version']}, {t['cores']} cores")
    print(f"ingest: reference {t['reference_data_seconds']}s, bronze + silver {t['bronze_to_silver_seconds']}s")
    print(f"risk_scores_gold step {t['gold_step_seconds']}s (run {t['gold_run_seconds']}s): {t['rows_scored']} rows, {t['rows_per_second']} rows/s, {t['rows_per_second_per_core']} rows/s/core, bands {t['bands']}")
    print(f"noop sink (after the gold step: warm JVM, silver in the page cache): features {t['noop_features_seconds']}s, features + score_frame {t['noop_features_and_scoring_seconds']}s "
          f"({t['noop_scoring_rows_per_second']} rows/s, {t['noop_scoring_rows_per_second_per_core']} rows/s/core); champion load {t['champion_load_seconds']}s")
    print(f"peak RSS: python {t['peak_rss_python_mb']} MB, JVM {t['peak_rss_spark_jvm_mb']} MB, largest Python worker {t['peak_rss_python_worker_max_mb']} MB "
          f"({t['python_worker_processes']} worker processes; reset before part B: {t['peak_rss_reset_before_part_b']})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=21, help="history days (training + test)")
    parser.add_argument("--train-days", type=int, default=14, help="the first N history days train the model; the rest are the test days")
    parser.add_argument("--history-events", type=int, default=20_000, help="events per history day")
    parser.add_argument("--start", default="2026-02-01", help="first history day")
    parser.add_argument("--events", type=int, default=5_000_000, help="events of the throughput day")
    parser.add_argument("--score-day", default=None, help="the throughput day (default: the day after the last history day)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--lake", default=str(Path(tempfile.gettempdir()) / "compliance-risk-bench"))
    parser.add_argument("--keep-landing", action="store_true", help="reuse generated landing days of the same seed and size")
    parser.add_argument("--skip-quality", action="store_true", help="skip part A (part B then needs the champion of an earlier part A in --lake)")
    parser.add_argument("--skip-throughput", action="store_true", help="skip part B")
    parser.add_argument("--verbose", action="store_true", help="Dagster logs at INFO (default WARNING)")
    parser.add_argument("--results-dir", default=str(ROOT / "bench" / "results"), help="where the JSON result goes")
    args = parser.parse_args()
    if args.skip_quality and args.skip_throughput:
        parser.error("nothing to do: both parts skipped")

    lake = Path(args.lake)
    lake.mkdir(parents=True, exist_ok=True)
    os.environ["LAKE_ROOT"] = str(lake)
    score_day = dt.date.fromisoformat(args.score_day) if args.score_day else dt.date.fromisoformat(args.start) + dt.timedelta(days=args.days)
    started = time.perf_counter()

    from resources.spark import start_session

    t0 = time.perf_counter()
    spark = start_session()
    jvm_start = time.perf_counter() - t0

    print(f"config: {json.dumps({k: v for k, v in vars(args).items()})}, score_day={score_day}, spark.master={spark.conf.get('spark.master')}, "
          f"driver_memory={spark.conf.get('spark.driver.memory')}, shuffle_partitions={spark.conf.get('spark.sql.shuffle.partitions')}, "
          f"default_parallelism={spark.sparkContext.defaultParallelism}, jvm_start={jvm_start:.1f}s", flush=True)
    bench = Bench(args, spark)

    figures: dict = {
        "args": vars(args), "score_day": str(score_day), "spark_master": spark.conf.get("spark.master"),
        "driver_memory": spark.conf.get("spark.driver.memory"), "cores": spark.sparkContext.defaultParallelism,
        "jvm_start_seconds": round(jvm_start, 1),
    }
    if not args.skip_quality:
        t0 = time.perf_counter()
        figures["quality"] = quality(bench)
        figures["quality_seconds"] = round(time.perf_counter() - t0, 1)
        print_quality(figures["quality"])
        print(f"part A: {figures['quality_seconds']}s", flush=True)
    if not args.skip_throughput:
        t0 = time.perf_counter()
        figures["throughput"] = throughput(bench, score_day)
        figures["throughput_seconds"] = round(time.perf_counter() - t0, 1)
        print_throughput(figures["throughput"])
        print(f"part B: {figures['throughput_seconds']}s", flush=True)
    figures["total_seconds"] = round(time.perf_counter() - started, 1)
    figures.update({f"process_{k}": v for k, v in memory_figures().items()})

    out = Path(args.results_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"risk_scoring_{args.events}_{dt.datetime.now():%Y%m%dT%H%M%S}.json"
    path.write_text(json.dumps(figures, indent=2, default=str))
    print(f"\ntotal {figures['total_seconds']}s; results: {path}")


if __name__ == "__main__":
    main()
