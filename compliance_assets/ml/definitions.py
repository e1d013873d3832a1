"""The model domain: outcomes, training features, the MLflow model, gold scores, anomaly alerts and the model audit
trail, their checks, and the scoring, training, promotion and rollback jobs."""

from dagster import Definitions, load_asset_checks_from_modules

from compliance_assets.ml import alerts, features_training, gold
from compliance_assets.ml.alerts import anomaly_alerts
from compliance_assets.ml.features_training import ml_features_training
from compliance_assets.ml.gold import risk_scores_gold
from compliance_assets.ml.jobs import daily_scoring_job, rollback_model_job, train_risk_model_job
from compliance_assets.ml.outcomes import outcome_checks, transaction_outcomes
from compliance_assets.ml.registry import model_audit, promote_challenger
from compliance_assets.ml.training import risk_model

defs = Definitions(
    assets=[transaction_outcomes, ml_features_training, risk_model, risk_scores_gold, anomaly_alerts, model_audit],
    asset_checks=[*outcome_checks, *load_asset_checks_from_modules([features_training, gold, alerts])],
    jobs=[daily_scoring_job, train_risk_model_job, promote_challenger, rollback_model_job],
)
