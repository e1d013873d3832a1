"""Resources injected into assets: Spark (with Delta), the lake, PII masking, MLflow tracking, the model
registry, the Kafka topic, the monitoring thresholds and the alert notifier. Built once, from the environment."""

from __future__ import annotations

from resources.kafka import KafkaResource, kafka_from_env
from resources.lake import LakeResource, default_lake_root
from resources.masking import PiiMaskingResource, masking_from_env
from resources.mlflow import ModelRegistryResource, mlflow_tracking_from_env, registry_from_env
from resources.monitoring import MonitoringResource, monitoring_from_env
from resources.notifier import NotifierResource, notifier_from_env
from resources.spark import build_spark_resource, spark_conf


def build_resources() -> dict:
    """The resource set of the local profile: values come from environment variables."""
    return {
        "spark": build_spark_resource(),
        "lake": LakeResource(root=default_lake_root()),
        "masking": masking_from_env(),
        "mlflow": mlflow_tracking_from_env(),
        "model_registry": registry_from_env(),
        "kafka": kafka_from_env(),
        "monitoring": monitoring_from_env(),
        "notifier": notifier_from_env(),
    }


def resources_for_lake(lake_root, landing_root=None, salt: str = "test-salt", kafka: KafkaResource | None = None) -> dict:
    """The same resource classes pointed at a given lake folder, with MLflow (SQLite store and
    artifacts) in <lake>/mlflow: for tests and benchmarks. The Spark resource reuses a live session."""
    from pathlib import Path

    mlflow_home = Path(lake_root) / "mlflow"
    mlflow_home.mkdir(parents=True, exist_ok=True)
    tracking_uri = f"sqlite:///{mlflow_home}/mlflow.db"
    return {
        "spark": build_spark_resource(),
        "lake": LakeResource(root=str(lake_root), landing_root=str(landing_root) if landing_root else ""),
        "masking": PiiMaskingResource(salt=salt),
        "mlflow": mlflow_tracking_from_env(tracking_uri, str(mlflow_home / "artifacts")),
        "model_registry": registry_from_env(tracking_uri),
        "kafka": kafka or kafka_from_env(),
        "monitoring": monitoring_from_env(),
        "notifier": NotifierResource(),  # log-only: test and benchmark lakes never post to a real channel
    }


__all__ = ["KafkaResource", "LakeResource", "ModelRegistryResource", "MonitoringResource", "NotifierResource", "PiiMaskingResource", "build_resources", "resources_for_lake", "build_spark_resource", "spark_conf"]
