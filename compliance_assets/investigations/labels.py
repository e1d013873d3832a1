"""Investigators' decisions as training outcomes: CONFIRM = label 1, DISMISS = label 0, each known only from
its decided_at on (ESCALATE is not an outcome). Kept free of other project imports so the feature code can use it.
"""

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

LABEL_OF_DECISION = {"CONFIRM": 1, "DISMISS": 0}

SCHEMA = T.StructType(
    [
        T.StructField("disposition_id", T.StringType(), False),
        T.StructField("alert_id", T.StringType(), False),
        T.StructField("transaction_id", T.StringType(), False),
        T.StructField("event_time", T.TimestampType(), False),
        T.StructField("decision", T.StringType(), False),
        T.StructField("investigator", T.StringType(), False),
        T.StructField("decided_at", T.TimestampType(), False),
        T.StructField("note", T.StringType(), True),
        T.StructField("source_file", T.StringType(), False),
        T.StructField("source_row", T.IntegerType(), False),
        T.StructField("received_day", T.DateType(), False),
        T.StructField("recorded_at", T.TimestampType(), False),
        T.StructField("dagster_run_id", T.StringType(), False),
    ]
)


def disposition_outcomes(dispositions: DataFrame) -> DataFrame:
    """transaction_id, label, decision_time: one outcome per CONFIRM or DISMISS decision (the full history;
    the latest decided before a cut-off wins where outcomes are read)."""
    label = F.when(F.col("decision") == "CONFIRM", F.lit(1)).when(F.col("decision") == "DISMISS", F.lit(0))
    return (
        dispositions.where(F.col("decision").isin(*LABEL_OF_DECISION))
        .select("transaction_id", label.cast("int").alias("label"), F.col("decided_at").alias("decision_time"))
    )


def current_decisions(dispositions: DataFrame) -> DataFrame:
    """Each alert's current decision: the latest decided_at (then the latest recorded), earlier ones superseded."""
    from pyspark.sql import Window

    latest = Window.partitionBy("alert_id").orderBy(F.col("decided_at").desc(), F.col("recorded_at").desc(), F.col("disposition_id").desc())
    return dispositions.withColumn("_rn", F.row_number().over(latest)).where("_rn = 1").drop("_rn")
