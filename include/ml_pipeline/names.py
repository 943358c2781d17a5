"""Names shared across stages and DAGs, defined once: registry aliases, MLflow tags and
experiments, metric directions, monitoring sources, and connection ids."""

from __future__ import annotations

# -- registry aliases ---------------------------------------------------------------------
CHALLENGER = "challenger"  # the version this DAG run registered
CHAMPION = "champion"  # what the model API serves: models:/<name>@champion
PREVIOUS_CHAMPION = "previous_champion"  # where champion was before: the rollback target

# -- MLflow tags (runs and model versions) ------------------------------------------------
AIRFLOW_RUN_TAG = "airflow_run_id"
AIRFLOW_DAG_TAG = "airflow_dag_id"
AIRFLOW_TASK_TAG = "airflow_task_id"
AIRFLOW_MAP_INDEX_TAG = "airflow_map_index"
ROLE_TAG = "ml_pipeline.role"  # parent | candidate | monitoring
CANDIDATE_TAG = "ml_pipeline.candidate"
MODEL_URI_TAG = "ml_pipeline.model_uri"
TRAIN_FINGERPRINT_TAG = "ml_pipeline.train_fingerprint"
PARENT_RUN_TAG = "mlflow.parentRunId"
# on model versions
FINGERPRINT_TAG = "data_fingerprint"
TRAIN_PATH_TAG = "train_path"  # where the version's training split lives (drift reference)
FEATURE_SPEC_TAG = "feature_spec"
VERSION_CANDIDATE_TAG = "candidate"
VERSION_RUN_TAG = "mlflow_run_id"
DECISION_TAG = "deployment_decision"
REASONS_TAG = "deployment_reasons"
RETRAIN_REQUESTED_TAG = "retrain_requested"

# -- experiments and sources --------------------------------------------------------------
MONITORING_EXPERIMENT = "ml_model_monitoring"
MONITORING_ROLE = "monitoring"
INFERENCE_LOG_SOURCE = "inference_log"
BATCH_SCORING_EXPERIMENT = "ml_batch_scoring"  # one run per batch: drift and scoring facts

# -- DAG ids ------------------------------------------------------------------------------
DEPLOYMENT_DAG_ID = "ml_model_deployment_advanced"
MONITORING_DAG_ID = "ml_model_monitoring"
BATCH_SCORING_DAG_ID = "ml_batch_scoring"

# -- metrics ------------------------------------------------------------------------------
CLASSIFICATION_METRICS = ("roc_auc", "accuracy", "f1", "precision", "recall", "log_loss")
REGRESSION_METRICS = ("rmse", "mae", "r2", "mape")
METRIC_NAMES = (*CLASSIFICATION_METRICS, *REGRESSION_METRICS)
# Direction of each metric: True when a larger value is better (the one place it is said).
GREATER_IS_BETTER = {
    "roc_auc": True,
    "accuracy": True,
    "f1": True,
    "precision": True,
    "recall": True,
    "log_loss": False,
    "rmse": False,
    "mae": False,
    "r2": True,
    "mape": False,
}
PROBLEM_TYPE_TAG = "problem_type"  # on runs and model versions: binary | multiclass | regression

# -- Airflow connection ids (defined in airflow_settings.yaml for `astro dev start`) ------
MODEL_API_CONN_ID = "model_api"  # defined: the model API is a service (never started by a task)
STORAGE_CONN_ID = "ml_pipeline_storage"  # credentials of the storage root (ML_PIPELINE_STORAGE)
MLFLOW_CONN_ID = "mlflow_tracking"  # the MLflow tracking server (else MLFLOW_TRACKING_URI)
SLACK_CONN_ID = "slack_notifications"
SMTP_CONN_ID = "smtp_notifications"
APPRISE_CONN_ID = "apprise_notifications"  # tagged Apprise URLs: Teams, Discord, PagerDuty, ...
JIRA_CONN_ID = "jira_notifications"  # a Jira ticket for each failure

# -- XCom keys besides return_value ---------------------------------------------------------
DECISION_XCOM_KEY = "decision"  # decidir_despliegue: the Decision payload
FAILURE_XCOM_KEY = "failure"  # any task that failed: its TaskFailure
ROLLBACK_XCOM_KEY = "rollback"  # revertir_despliegue: the Rollback payload

# -- task ids that other tasks read XComs from ------------------------------------------------
DECISION_TASK_ID = "decidir_despliegue"
ROLLBACK_TASK_ID = "despliegue_modelo.revertir_despliegue"

# -- monitoring runs: tags the retraining cool-down searches ---------------------------------
MONITORED_MODEL_TAG = "model_name"
MONITORED_VERSION_TAG = "model_version"

# -- the input contract of a model version (registry.contract) ------------------------------
INPUT_CONTRACT_TAG = "input_contract"  # on model versions: runs:/<run>/<artifact path>
INPUT_CONTRACT_ARTIFACT = "contract/input_contract.json"  # in the version's run
CONTRACT_CHANGES_TAG = "contract_changes"  # on model versions: the gate's named differences

# -- model API traffic kinds: the request header and what the inference log records ----------
TRAFFIC_HEADER = "X-Traffic-Kind"  # smoke tests and benchmarks set it; anything else is live
LIVE_TRAFFIC = "live"  # the only kind monitoring reads by default
SMOKE_TRAFFIC = "smoke"
BENCHMARK_TRAFFIC = "benchmark"
TRAFFIC_KINDS = (LIVE_TRAFFIC, SMOKE_TRAFFIC, BENCHMARK_TRAFFIC)
