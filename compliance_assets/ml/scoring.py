"""Scoring in Spark: one function, `score_frame`, used by the daily gold asset and the streaming job.

The model travels to the Python workers inside the `mapInPandas` closure; each Arrow batch is
scored with exact per-row TreeSHAP contributions. The top-k contributions come back as flat
columns (cheap to build in numpy) and are assembled into the `top_features` array in Spark.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from compliance_assets.ml.risk_model import RiskModel

PASSTHROUGH = ("transaction_id", "event_time", "event_date", "ingest_date", "account_id", "dq_status")
TOP_FEATURE_TYPE = T.ArrayType(
    T.StructType([T.StructField("feature", T.StringType()), T.StructField("value", T.DoubleType()), T.StructField("contribution", T.DoubleType())])
)


def _scored_schema(features: DataFrame, passthrough: tuple[str, ...], k: int) -> T.StructType:
    fields = [features.schema[c] for c in passthrough]
    fields += [T.StructField("risk_score", T.DoubleType()), T.StructField("risk_band", T.StringType())]
    for i in range(k):
        fields += [T.StructField(f"_f{i}", T.IntegerType()), T.StructField(f"_v{i}", T.DoubleType()), T.StructField(f"_c{i}", T.DoubleType())]
    return T.StructType(fields)


def score_frame(features: DataFrame, model: RiskModel, passthrough: tuple[str, ...] = PASSTHROUGH) -> DataFrame:
    """`passthrough` columns plus risk_score, risk_band and top_features for every row of `features`
    (a frame with the model's feature columns)."""
    k = min(model.top_k, len(model.features) + 1)
    cols = list(passthrough)

    def score_batches(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for pdf in batches:
            s = model.score(pdf)
            out = pdf[cols].copy()
            out["risk_score"] = s.risk_score
            out["risk_band"] = s.risk_band
            for i in range(k):
                out[f"_f{i}"] = s.top_index[:, i]  # names are looked up in Spark: ints cross Arrow cheaply
                out[f"_v{i}"] = s.top_values[:, i]  # NaN (unknown feature value) arrives in Spark as null
                out[f"_c{i}"] = s.top_contributions[:, i]
            yield out

    scored = features.select(*cols, *model.features).mapInPandas(score_batches, _scored_schema(features, passthrough, k))
    names = F.array(*[F.lit(n) for n in model.feature_names])
    top = F.array(*[F.struct(F.element_at(names, F.col(f"_f{i}") + 1).alias("feature"), F.col(f"_v{i}").alias("value"), F.round(F.col(f"_c{i}"), 6).alias("contribution")) for i in range(k)])
    return scored.select(
        *cols, F.round("risk_score", 6).alias("risk_score"), "risk_band", top.cast(TOP_FEATURE_TYPE).alias("top_features")
    )


def with_model_ids(scored: DataFrame, model_name: str, model_version: str, model_run_id: str | None, pipeline_run_id: str, scored_at: dt.datetime) -> DataFrame:
    """Add the provenance columns every gold row carries (latency_ms is for streamed rows: null here)."""
    return (
        scored.withColumn("model_name", F.lit(model_name))
        .withColumn("model_version", F.lit(str(model_version)))
        .withColumn("model_run_id", F.lit(model_run_id).cast("string"))
        .withColumn("pipeline_run_id", F.lit(pipeline_run_id))
        .withColumn("scored_at", F.lit(scored_at).cast("timestamp"))
        .withColumn("latency_ms", F.lit(None).cast("double"))
    )
