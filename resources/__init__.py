"""Resources injected into assets: Spark (with Delta), the lake, PII masking, MLflow tracking and the model
registry. Built once, from the environment."""

from __future__ import annotations

from resources.lake import LakeResource, default_lake_root
from resources.masking import PiiMaskingResource, masking_from_env
from resources.mlflow import ModelRegistryResource, mlflow_tracking_from_env, registry_from_env
from resources.spark import build_spark_resource, spark_conf


def build_resources() -> dict:
    """The resource set of the local profile: values come from environment variables."""
    return {
        "spark": build_spark_resource(),
        "lake": LakeResource(root=default_lake_root()),
        "masking": masking_from_env(),
        "mlflow": mlflow_tracking_from_env(),
        "model_registry": registry_from_env(),
    }


__all__ = ["LakeResource", "ModelRegistryResource", "PiiMaskingResource", "build_resources", "build_spark_resource", "spark_conf"]
