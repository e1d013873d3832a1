"""Deployment profiles: DEPLOYMENT_PROFILE=local (the embedded defaults) or azure. The Definitions are the same in
both; only the resources built here (and the Dagster instance's dagster.yaml) differ. No asset looks at the
profile.

azure: the lake on ADLS Gen2 (`abfss://`, Spark's ABFS driver), Event Hubs' Kafka endpoint, an MLflow server
(Azure ML, Databricks or `mlflow server`), a Spark cluster (SPARK_MASTER), the alert webhook and the masking
salt, every secret from an environment variable injected from Key Vault. See docs/deploy-azure.md.
"""

import os

LOCAL, AZURE = "local", "azure"
PROFILES = (LOCAL, AZURE)
PROFILE_ENV = "DEPLOYMENT_PROFILE"


def current_profile() -> str:
    profile = os.getenv(PROFILE_ENV, LOCAL).strip().lower() or LOCAL
    if profile not in PROFILES:
        raise ValueError(f"{PROFILE_ENV}={profile!r}: expected one of {', '.join(PROFILES)}")
    return profile


def azure_problems() -> list[str]:
    """What the azure profile needs from the environment and is missing (names only, never values)."""
    problems = []
    if not os.getenv("LAKE_ROOT", "").startswith("abfss://"):
        problems.append("LAKE_ROOT must be an abfss://<container>@<account>.dfs.core.windows.net/<path> URI")
    if not os.getenv("MLFLOW_TRACKING_URI"):
        problems.append("MLFLOW_TRACKING_URI (Azure ML workspace, Databricks or an MLflow server) is not set")
    if not (os.getenv("EVENTHUBS_CONNECTION_STRING") or os.getenv("KAFKA_BOOTSTRAP_SERVERS")):
        problems.append("EVENTHUBS_CONNECTION_STRING (or KAFKA_BOOTSTRAP_SERVERS) is not set")
    if not os.getenv("PII_HASH_SALT"):
        problems.append("PII_HASH_SALT (the masking salt) is not set")
    return problems
