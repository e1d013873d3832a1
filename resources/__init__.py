"""Resources injected into assets: Spark (with Delta), the lake, PII masking, MLflow tracking, the model
registry, the Kafka topic, the monitoring thresholds, the alert notifier, the file drops (ledger files in, exports out and dashboards) the case-management endpoint and the BI serving database. Built once, from the environment,
for the deployment profile (resources/profiles.py)."""

from __future__ import annotations

import os
from pathlib import Path

from resources.azure import AdlsSettings, hadoop_azure_package
from resources.case_management import CaseManagementResource, case_management_from_env
from resources.file_drops import FileDropResource, LocalFileDrops, file_drops_from_env
from resources.kafka import KafkaResource, kafka_from_env
from resources.lake import LakeResource, default_lake_root
from resources.masking import PiiMaskingResource, masking_from_env
from resources.mlflow import ModelRegistryResource, mlflow_tracking_from_env, registry_from_env
from resources.monitoring import MonitoringResource, monitoring_from_env
from resources.notifier import NotifierResource, notifier_from_env
from resources.serving import ServingDatabaseResource, serving_from_env, sqlite_url
from resources.profiles import AZURE, PROFILE_ENV, azure_problems, current_profile
from resources.spark import build_spark_resource, spark_conf


def azure_spark_resource():
    """Spark for the azure profile: hadoop-azure (ABFS) matching Spark's Hadoop, the account's non-secret
    settings in the configuration and its secret read from the environment at session start."""
    problems = azure_problems()
    try:
        adls = AdlsSettings.from_env()
    except ValueError as exc:
        problems.append(str(exc))
    if problems:
        raise ValueError(f"{PROFILE_ENV}=azure: " + "; ".join(problems) + ". See docs/deploy-azure.md.")
    return build_spark_resource((hadoop_azure_package(),), adls.spark_conf(), adls.secret_env())


def _source_mappings_dir() -> str:
    """SOURCE_MAPPINGS_DIR resolved (symbolic links too) where the code location starts; empty = the default
    (the repository's examples/ folder, compliance_assets/transforms/mapping_files.py)."""
    value = os.getenv("SOURCE_MAPPINGS_DIR", "").strip()
    return str(Path(value).resolve()) if value else ""


def build_resources() -> dict:
    """The resource set of the deployment profile (DEPLOYMENT_PROFILE, local by default): the same resource
    classes, values from environment variables; azure adds ADLS Gen2 to Spark and requires its settings."""
    return {
        "spark": azure_spark_resource() if current_profile() == AZURE else build_spark_resource(),
        "lake": LakeResource(root=default_lake_root(), source_mappings_dir=_source_mappings_dir()),
        "masking": masking_from_env(),
        "mlflow": mlflow_tracking_from_env(),
        "model_registry": registry_from_env(),
        "kafka": kafka_from_env(),
        "monitoring": monitoring_from_env(),
        "notifier": notifier_from_env(),
        "file_drops": file_drops_from_env(),
        "case_management": case_management_from_env(),
        "serving_db": serving_from_env(default_lake_root()),
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
        "file_drops": LocalFileDrops(root=str(Path(lake_root) / "drops")),
        "case_management": CaseManagementResource(),  # no endpoint: the hand-off sensor skips
        "serving_db": ServingDatabaseResource(url=sqlite_url(str(lake_root))),  # test and benchmark lakes never publish to SERVING_DB_URL
    }


__all__ = ["CaseManagementResource", "KafkaResource", "LakeResource", "ModelRegistryResource", "MonitoringResource", "NotifierResource", "PiiMaskingResource", "ServingDatabaseResource", "FileDropResource", "LocalFileDrops", "build_resources", "resources_for_lake", "build_spark_resource", "spark_conf"]
