"""The Spark session resource: dagster-pyspark's PySparkResource with Delta Lake configured.

JVM packages (Delta, the Kafka connector) come from Maven Central through Ivy on first use
and are cached under ~/.ivy2.5.2. Settings come from environment variables so a cluster profile
only changes configuration.
"""

from __future__ import annotations

import os
import sys
from importlib.metadata import version

from dagster_pyspark import PySparkResource

SCALA_BINARY = "2.13"


# columns with (nearly) one value per transaction, or per account: more distinct values than a
# 1 MB Parquet dictionary page holds
NO_DICTIONARY_COLUMNS = (
    "ingest_id", "source_line", "payload", "transaction_id", "event_time", "amount", "amount_base",
    "latitude", "longitude", "delivery_latitude", "delivery_longitude", "description", "counterparty_name",
    "amount_to_avg_30d", "amount_to_typical", "distance_from_home_km", "delivery_distance_km",
    "distance_from_prev_km", "travel_speed_kmh", "amount_avg_30d_prior", "amount_max_7d_prior", "amount_to_max_7d", "seconds_since_prev_txn",
    "amount_sum_1h", "amount_sum_24h", "amount_sum_7d", "amount_sum_30d",
    "account_id", "home_latitude", "home_longitude", "typical_amount",
)


def delta_package() -> str:
    """Maven coordinates of the Delta jar matching the installed pyspark and delta-spark."""
    spark_major_minor = ".".join(version("pyspark").split(".")[:2])
    return f"io.delta:delta-spark_{spark_major_minor}_{SCALA_BINARY}:{version('delta-spark')}"


def kafka_package() -> str:
    """Maven coordinates of Spark's Kafka source (also Event Hubs' Kafka endpoint) for the installed pyspark."""
    return f"org.apache.spark:spark-sql-kafka-0-10_{SCALA_BINARY}:{version('pyspark')}"


def spark_conf(extra_packages: tuple[str, ...] = (), extra_conf: dict[str, str] | None = None) -> dict[str, str]:
    """Spark settings for a Delta-enabled session with the Kafka source; SPARK_* environment variables override them.
    `extra_conf` (e.g. the Azure profile's ABFS settings) is added last; it must hold no secret."""
    packages = [delta_package(), kafka_package(), *extra_packages]
    master = os.getenv("SPARK_MASTER", "local[*]")
    # The throughput collector: batch steps care about CPU, not pause times, and G1's write barriers cost ~15% of
    # the validation stage here (SPARK_JVM_GC to change it). -XX:-DontCompileHugeMethods: see hugeMethodLimit below.
    jvm_flags = f"-Dlog4j2.level=WARN -XX:-DontCompileHugeMethods {os.getenv('SPARK_JVM_GC', '-XX:+UseParallelGC')}"
    # Python workers (model scoring in mapInPandas) run this interpreter, so they see the same pinned
    # packages; PySpark reads the worker interpreter from PYSPARK_PYTHON only (the driver sends it with every
    # Python task, so a standalone cluster's executors on this machine use it too; set it for another layout)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    conf = {
        "spark.master": master,
        "spark.app.name": os.getenv("SPARK_APP_NAME", "compliance-platform"),
        "spark.jars.packages": ",".join(packages),
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": os.getenv("SPARK_SHUFFLE_PARTITIONS", "8"),
        "spark.driver.memory": os.getenv("SPARK_DRIVER_MEMORY", "6g"),
        "spark.ui.enabled": os.getenv("SPARK_UI_ENABLED", "false"),
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.adaptive.enabled": "true",
        # optimized writes add a full shuffle before every write; our writes are already one task
        # per input file or shuffle partition, so they stay off unless asked for
        "spark.databricks.delta.optimizeWrite.enabled": os.getenv("DELTA_OPTIMIZE_WRITE", "false"),
        "spark.sql.parquet.compression.codec": os.getenv("PARQUET_CODEC", "zstd"),
        # a delivery's checked records are cached once and read four times; building compressed
        # in-memory columns cost more than the memory it saves
        "spark.sql.inMemoryColumnarStorage.compressed": "false",
        # on one machine shuffle files stay in the page cache: compressing them only costs CPU
        "spark.shuffle.compress": os.getenv("SPARK_SHUFFLE_COMPRESS", "false" if master.startswith("local") else "true"),
        # a day lands as a few dozen files of ~10-20 MB; the 128 MB default packs them into three
        # or so uneven read tasks, which leaves one of two local cores idle for the last third
        "spark.sql.files.maxPartitionBytes": os.getenv("SPARK_MAX_PARTITION_BYTES", "16m" if master.startswith("local") else "128m"),
        "spark.databricks.delta.autoCompact.enabled": "false",
        "spark.sql.sources.partitionOverwriteMode": "static",
        # Delta's log replay defaults to 50 tasks per snapshot; a local lake needs a couple.
        "spark.databricks.delta.snapshotPartitions": os.getenv("DELTA_SNAPSHOT_PARTITIONS", "2"),
        # Validation compiles into large generated methods: keep whole-stage codegen for them and let
        # the JIT compile them (the JVM skips methods over 8,000 bytecodes by default).
        "spark.sql.codegen.hugeMethodLimit": "65535",
        # SPARK_JVM_OPTIONS: more driver JVM flags
        "spark.driver.extraJavaOptions": f"{jvm_flags} {os.getenv('SPARK_JVM_OPTIONS', '')}".strip(),
    }
    if not master.startswith("local"):  # executors are JVMs of their own: the same flags
        conf["spark.executor.extraJavaOptions"] = jvm_flags
        conf["spark.executor.memory"] = os.getenv("SPARK_EXECUTOR_MEMORY", "1g")
    if os.getenv("SPARK_DRIVER_HOST"):  # the address executors call the driver back on (e.g. 127.0.0.1 for a local cluster)
        conf["spark.driver.host"] = conf["spark.driver.bindAddress"] = os.environ["SPARK_DRIVER_HOST"]
    # a dictionary never pays off for such columns: Parquet fills one per column chunk, then falls
    # back to plain encoding; skipping it saves about a quarter of the silver write at ~10% more bytes
    conf.update({f"spark.hadoop.parquet.enable.dictionary#{c}": "false" for c in NO_DICTIONARY_COLUMNS})
    conf.update(extra_conf or {})
    return conf


def apply_secret_hadoop_conf(session, secret_env: dict[str, str]) -> None:
    """Set Hadoop settings whose values are secrets from their environment variables, inside the JVM only
    (nothing is logged; a missing variable fails with its name, never a value)."""
    missing = [env for env in secret_env.values() if not os.getenv(env)]
    if missing:
        raise RuntimeError(f"Spark storage credentials missing: set {', '.join(sorted(set(missing)))} (injected from Key Vault on Azure)")
    hadoop = session.sparkContext._jsc.hadoopConfiguration()
    for key, env in secret_env.items():
        hadoop.set(key, os.environ[env])


class SparkResource(PySparkResource):
    """dagster-pyspark's PySparkResource plus storage secrets named by environment variable: the run's stored
    configuration holds `hadoop setting -> variable name`, the value is read when the session starts."""

    secret_hadoop_env: dict[str, str] = {}

    def setup_for_execution(self, context) -> None:
        super().setup_for_execution(context)
        if self.secret_hadoop_env:
            apply_secret_hadoop_conf(self.spark_session, self.secret_hadoop_env)


def start_session(conf: dict[str, str] | None = None, secret_env: dict[str, str] | None = None):
    """A SparkSession with `spark_conf()` (or the live one), for tests and benchmarks that start Spark
    themselves; the PySparkResource then reuses it."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder
    for key, value in (conf or spark_conf()).items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    if secret_env:
        apply_secret_hadoop_conf(session, secret_env)
    return session


def build_spark_resource(extra_packages: tuple[str, ...] = (), extra_conf: dict[str, str] | None = None, secret_env: dict[str, str] | None = None) -> SparkResource:
    """The Spark resource every Spark asset receives (the profile adds its storage driver and settings)."""
    return SparkResource(spark_config=spark_conf(extra_packages, extra_conf), secret_hadoop_env=secret_env or {})
