"""MLflow: experiment tracking (dagster-mlflow's `mlflow_tracking`) and the model registry.

Embedded default: a SQLite tracking store and a local artifact folder under MLFLOW_HOME (default
./mlruns). MLFLOW_TRACKING_URI points both at a remote server (Azure ML, Databricks, mlflow server).
Scoring loads `models:/<MODEL_NAME>@champion`; training registers versions as `@challenger`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import mlflow
from dagster import ConfigurableResource, Failure, resource
from dagster_mlflow.resources import CONFIG_SCHEMA, MlFlow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from pydantic import Field

DEFAULT_MODEL_NAME = "transaction_risk"
DEFAULT_EXPERIMENT = "transaction-risk"
CHAMPION, CHALLENGER = "champion", "challenger"


def default_tracking_uri() -> str:
    if os.getenv("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    home = Path(os.getenv("MLFLOW_HOME", "mlruns")).resolve()
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home}/mlflow.db"


def default_artifact_root() -> str:
    """Where a new experiment keeps its artifacts ('' lets a remote server decide)."""
    if os.getenv("MLFLOW_ARTIFACT_ROOT") is not None:
        return os.environ["MLFLOW_ARTIFACT_ROOT"]
    if os.getenv("MLFLOW_TRACKING_URI"):
        return ""
    return str(Path(os.getenv("MLFLOW_HOME", "mlruns")).resolve() / "artifacts")


def ensure_experiment(tracking_uri: str, name: str, artifact_root: str) -> None:
    """Create the experiment with our artifact location (MLflow's default is ./mlruns of the cwd)."""
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    if client.get_experiment_by_name(name) is None:
        client.create_experiment(name, artifact_location=f"{artifact_root}/{name}" if artifact_root else None)


@resource(config_schema={**CONFIG_SCHEMA, "artifact_root": str})
def mlflow_tracking(context) -> MlFlow:
    """dagster-mlflow's tracking resource (one MLflow run per Dagster run, tagged with its run id),
    after making sure the experiment exists with our artifact location."""
    config = context.resource_config
    ensure_experiment(config["mlflow_tracking_uri"], config["experiment_name"], config["artifact_root"])
    return MlFlow(context)


def mlflow_tracking_from_env(tracking_uri: str | None = None, artifact_root: str | None = None):
    return mlflow_tracking.configured(
        {
            "experiment_name": os.getenv("MLFLOW_EXPERIMENT", DEFAULT_EXPERIMENT),
            "mlflow_tracking_uri": tracking_uri or default_tracking_uri(),
            "artifact_root": default_artifact_root() if artifact_root is None else artifact_root,
        }
    )


class ModelRegistryResource(ConfigurableResource):
    """The registered risk model: versions, the champion / challenger aliases, loading for scoring."""

    tracking_uri: str = Field(description="MLflow tracking / registry URI (MLFLOW_TRACKING_URI).")
    model_name: str = Field(default=DEFAULT_MODEL_NAME, description="Registered model name (MLFLOW_MODEL_NAME).")

    def client(self) -> mlflow.MlflowClient:
        return mlflow.MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def version_by_alias(self, alias: str) -> ModelVersion | None:
        try:
            return self.client().get_model_version_by_alias(self.model_name, alias)
        except MlflowException:
            return None

    def version(self, version: str | int) -> ModelVersion:
        try:
            return self.client().get_model_version(self.model_name, str(version))
        except MlflowException as exc:
            raise Failure(f"Model {self.model_name} has no version {version}: {exc.message}") from exc

    def set_alias(self, alias: str, version: str | int) -> None:
        self.client().set_registered_model_alias(self.model_name, alias, str(version))

    def load(self, version: ModelVersion):
        """The RiskModel of a registered version; a clear Failure if its artifacts cannot be loaded."""
        import mlflow.pyfunc

        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        uri = f"models:/{self.model_name}/{version.version}"
        try:
            return mlflow.pyfunc.load_model(uri).unwrap_python_model()
        except Exception as exc:  # a corrupt or missing artifact surfaces as many exception types
            raise Failure(
                f"Model {self.model_name} version {version.version} ({uri}, run {version.run_id}) could not be loaded: "
                f"{type(exc).__name__}: {exc}. Nothing was scored; roll back to a working version with the rollback_model job."
            ) from exc

    def run_dict(self, run_id: str, artifact: str) -> dict | None:
        """A JSON artifact logged with a model's run (None when that run has none: an older model)."""
        import tempfile

        try:
            with tempfile.TemporaryDirectory() as tmp:
                path = self.client().download_artifacts(run_id, artifact, tmp)
                with open(path) as f:
                    return json.load(f)
        except (MlflowException, OSError):
            return None

    def champion(self):
        """(version, RiskModel) of `@champion`, or a Failure that says how to get one."""
        version = self.version_by_alias(CHAMPION)
        if version is None:
            raise Failure(
                f"No champion model: registered model {self.model_name!r} has no '{CHAMPION}' alias at {self.tracking_uri}. "
                "Train one (risk_model asset), then run the promote_challenger job with an approver. Nothing was scored."
            )
        return version, self.load(version)


def registry_from_env(tracking_uri: str | None = None) -> ModelRegistryResource:
    return ModelRegistryResource(tracking_uri=tracking_uri or default_tracking_uri(), model_name=os.getenv("MLFLOW_MODEL_NAME", DEFAULT_MODEL_NAME))
