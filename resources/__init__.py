"""Resources injected into assets: Spark (with Delta), the lake. Built once, from the environment."""

from __future__ import annotations

from resources.lake import LakeResource, default_lake_root
from resources.masking import PiiMaskingResource, masking_from_env
from resources.spark import build_spark_resource, spark_conf


def build_resources() -> dict:
    """The resource set of the local profile: values come from environment variables."""
    return {
        "spark": build_spark_resource(),
        "lake": LakeResource(root=default_lake_root()),
        "masking": masking_from_env(),
    }


__all__ = ["LakeResource", "PiiMaskingResource", "build_resources", "build_spark_resource", "spark_conf"]
