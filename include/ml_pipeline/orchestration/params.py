"""The Params of both DAGs, defined once, and the typed settings each stage builds from them.

Both DAGs use the same names for the same knobs (the drift thresholds are `drift_*` in both);
the stage code never sees an Airflow `Param`, only plain values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from include.ml_pipeline.config import get_settings
from include.ml_pipeline.data_preparation import sample_data
from include.ml_pipeline.deployment.experiment_run import (
    DEFAULT_CANARY_STEPS,
    DEFAULT_MIN_REQUESTS,
    RELEASE_STRATEGIES,
)
from include.ml_pipeline.names import (
    APPRISE_CONN_ID,
    JIRA_CONN_ID,
    SLACK_CONN_ID,
    SMTP_CONN_ID,
)
from include.ml_pipeline.orchestration.compat import Param
from include.ml_pipeline.problem import PROBLEM_TYPE_CHOICES
from include.ml_pipeline.runs import batch_incoming_uri, default_data_uri
from include.ml_pipeline.training.candidates import (
    DEFAULT_CANDIDATES,
    DEFAULT_REGRESSION_CANDIDATES,
)

#: The sensor's hard ceiling; the wait a run allows is the `sensor_timeout_seconds` Param.
SENSOR_MAX_TIMEOUT_SECONDS = 7 * 24 * 3600

#: The deploy gate's Params (`registry.decision.Thresholds`).
GATE_KEYS = (
    "min_roc_auc",
    "min_accuracy",
    "max_log_loss",
    "min_f1",
    "max_rmse",
    "min_r2",
    "primary_metric",
    "tolerance",
    "min_lift_over_baseline",
    "allow_contract_change",
)
#: The drift check's Params (`monitoring.drift.DriftThresholds` without the prefix).
DRIFT_PREFIX = "drift_"
DRIFT_KEYS = (
    "drift_alpha",
    "drift_psi_threshold",
    "drift_ks_threshold",
    "drift_share",
    "drift_min_rows",
    "drift_max_rows",
)


def gate_thresholds(params: Mapping[str, Any]) -> dict[str, Any]:
    """The deploy gate's settings from a run's Params (a key absent from `params` keeps
    the gate's default)."""
    return {key: params[key] for key in GATE_KEYS if key in params}


def drift_thresholds(params: Mapping[str, Any]) -> dict[str, Any]:
    """The drift check's settings from a run's Params (names without `drift_`;
    `drift_share` keeps its name)."""
    out = {}
    for key in DRIFT_KEYS:
        if key in params:
            name = key if key == "drift_share" else key.removeprefix(DRIFT_PREFIX)
            out[name] = params[key]
    return out


def _drift_params(*, window_description: str) -> dict[str, Param]:
    return {
        "drift_alpha": Param(
            0.05,
            type="number",
            exclusiveMinimum=0,
            exclusiveMaximum=1,
            description="Family-wise significance level (Bonferroni across features)",
        ),
        "drift_psi_threshold": Param(
            0.1, type="number", minimum=0, description="PSI at or above which a shift is material"
        ),
        "drift_ks_threshold": Param(
            0.1,
            type="number",
            minimum=0,
            maximum=1,
            description="KS statistic at or above which a numeric shift is material",
        ),
        "drift_share": Param(
            0.3,
            type="number",
            exclusiveMinimum=0,
            maximum=1,
            description="Share of drifted features that makes the dataset drifted",
        ),
        "drift_min_rows": Param(
            100, type="integer", minimum=1, description="Fewer current rows: insufficient data"
        ),
        "drift_max_rows": Param(
            50_000, type="integer", minimum=1, description="Sub-sample above this"
        ),
        "drift_window_hours": Param(
            24, type="number", exclusiveMinimum=0, description=window_description
        ),
    }


def deployment_params() -> dict[str, Param]:
    """Params of `ml_model_deployment_advanced`, in the order the Trigger form shows them."""
    settings = get_settings()
    return {
        # -- data
        "data_uri": Param(
            default_data_uri(settings),
            type="string",
            description="Raw CSV or Parquet: a local path or any URI the Astro SDK reads",
        ),
        "data_conn_id": Param(
            None,
            type=["null", "string"],
            description="Airflow connection for a remote data_uri (s3, gcs, ...)",
        ),
        "sensor_poke_interval_seconds": Param(30, type="integer", minimum=1),
        "sensor_timeout_seconds": Param(
            6 * 3600, type="integer", minimum=1, maximum=SENSOR_MAX_TIMEOUT_SECONDS
        ),
        # -- validation and preparation
        "target": Param(sample_data.TARGET, type="string", description="Label column"),
        "problem_type": Param(
            "auto",
            type="string",
            enum=list(PROBLEM_TYPE_CHOICES),
            description="auto: inferred from the label column (two values: binary; text or "
            "true/false: classification; numbers: regression, unless whole numbers with few "
            "distinct values: multiclass), the reason in the validation report; or set "
            "binary, multiclass or regression to fix a wrong guess",
        ),
        "required_columns": Param(
            [*sample_data.NUMERIC_COLUMNS, *sample_data.CATEGORICAL_COLUMNS],
            type="array",
            description="Columns the file must have",
        ),
        "numeric_columns": Param(
            list(sample_data.NUMERIC_COLUMNS),
            type="array",
            description="Columns that must parse as numbers (others inferred)",
        ),
        "categorical_columns": Param(
            [], type="array", description="Columns always treated as categories"
        ),
        "exclude_columns": Param([], type="array", description="Columns never used as features"),
        "value_ranges": Param(
            {"age": [0, 120], "tenure_months": [0, 1200]},
            type="object",
            description="{column: [min, max]} ranges that values must respect",
        ),
        "min_rows": Param(100, type="integer", minimum=1),
        "max_null_fraction": Param(0.5, type="number", minimum=0, maximum=1),
        "max_target_null_fraction": Param(0.01, type="number", minimum=0, maximum=1),
        "max_duplicate_fraction": Param(
            None,
            type=["null", "number"],
            minimum=0,
            maximum=1,
            description="Fail when more than this share of rows repeat another row exactly; "
            "null: repeated rows are only a warning",
        ),
        "min_class_count": Param(10, type="integer", minimum=1),
        "leakage_threshold": Param(
            0.95,
            type=["null", "number"],
            minimum=0,
            maximum=1,
            description="Refuse a column that alone explains this share of the label's "
            "uncertainty (a copy of the target); null: not checked",
        ),
        "drop_duplicates": Param(
            True,
            type="boolean",
            description="Drop rows that repeat another row exactly, identifier column "
            "included (only tables with an identifier column; others keep repeated rows)",
        ),
        # -- split
        "test_size": Param(0.2, type="number", exclusiveMinimum=0, exclusiveMaximum=1),
        "validation_size": Param(0.2, type="number", exclusiveMinimum=0, exclusiveMaximum=1),
        "seed": Param(42, type="integer"),
        # -- training
        "candidates": Param(
            None,
            type=["null", "array"],
            description='Models to try: [{"name", "estimator", "params", "search", "input"}]; '
            "null: the defaults of the problem type (classification: "
            f"{', '.join(c['name'] for c in DEFAULT_CANDIDATES)}; regression: "
            f"{', '.join(c['name'] for c in DEFAULT_REGRESSION_CANDIDATES)}). Estimators: "
            "logistic_regression (classification), ridge (regression), "
            "hist_gradient_boosting, random_forest, dummy, lightgbm, xgboost, or your own "
            "as an import path package.module:name (input: preprocessed | raw). search: an "
            'optional Optuna search, {"n_trials", "timeout_seconds", "seed", "params": '
            '{name: {"type": "int" | "float" | "categorical", ...}}} (see the README)',
        ),
        "selection_metric": Param(
            "auto",
            type="string",
            description="Validation metric that picks the best candidate; auto: roc_auc for "
            "classification, rmse for regression",
        ),
        "model_name": Param(
            settings.model_name, type="string", description="Registered model name in MLflow"
        ),
        # -- deploy gate
        "min_lift_over_baseline": Param(
            0.05,
            type=["null", "number"],
            minimum=0,
            description="Deploy gate: how much the challenger must beat the baseline on "
            "primary_metric, both scored on the same test split (null: off). "
            "Classification: the class-prior baseline, an absolute difference (0.05 of ROC "
            "AUC). Regression: the mean predictor, a relative reduction of the error (0.05: "
            "RMSE at least 5% lower than the mean baseline's)",
        ),
        "min_roc_auc": Param(None, type=["null", "number"], description="Deploy gate (optional)"),
        "min_accuracy": Param(None, type=["null", "number"], description="Deploy gate (optional)"),
        "max_log_loss": Param(None, type=["null", "number"], description="Deploy gate (optional)"),
        "min_f1": Param(None, type=["null", "number"], description="Deploy gate (optional)"),
        "max_rmse": Param(
            None, type=["null", "number"], description="Deploy gate, regression (optional)"
        ),
        "min_r2": Param(
            None, type=["null", "number"], description="Deploy gate, regression (optional)"
        ),
        "primary_metric": Param(
            "auto",
            type="string",
            description="Metric compared with the baseline and the champion; auto: roc_auc "
            "for classification, rmse for regression",
        ),
        "tolerance": Param(
            0.01,
            type="number",
            minimum=0,
            description="How much worse than the champion is still acceptable (on "
            "primary_metric; for RMSE/MAE/MAPE a share of the champion's: 0.01 is 1% worse)",
        ),
        "allow_contract_change": Param(
            False,
            type="boolean",
            description="Deploy a challenger whose input contract (columns, types, labels) "
            "differs from the champion's; the deployed notification says what clients must "
            "change. false: such a challenger is rejected, naming the differences",
        ),
        # -- deployment
        "latency_p95_budget_ms": Param(
            50.0,
            type="number",
            exclusiveMinimum=0,
            description="pruebas_api: p95 of 1-row requests",
        ),
        "api_timeout_seconds": Param(
            180, type="integer", minimum=5, description="Bound on starting/reloading the model API"
        ),
        # -- release on live evidence (deployment/experiment_run.py, docs/safe-release.md)
        "release_strategy": Param(
            "direct",
            type="string",
            enum=list(RELEASE_STRATEGIES),
            description="direct: the challenger replaces the champion at once (the replay is "
            "evidence only). shadow: the API runs it next to the champion on every request "
            "(the champion answers) and the stated decision promotes or aborts it. canary: "
            "shadow first, then canary_steps of live traffic, one planned look per stage",
        ),
        "canary_steps": Param(
            list(DEFAULT_CANARY_STEPS),
            type="array",
            items={"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 100},
            minItems=1,
            description="canary: the challenger's percent of traffic at each step, rising "
            "(e.g. [5, 25, 50]); each step is one planned look",
        ),
        "release_min_requests": Param(
            DEFAULT_MIN_REQUESTS,
            type="integer",
            minimum=1,
            description="shadow/canary: challenger requests each stage adds before its look "
            "(look k of K waits for k x this many since the experiment started)",
        ),
        "release_max_wait_minutes": Param(
            60.0,
            type="number",
            exclusiveMinimum=0,
            description="shadow/canary: the longest a stage waits for its requests; past it "
            "the look is taken on what came (too little traffic: inconclusive, the champion "
            "stays)",
        ),
        "release_poke_seconds": Param(
            30,
            type="integer",
            minimum=1,
            description="shadow/canary: how often desplegar_api reads the evidence (it "
            "holds no worker slot in between: a reschedule-mode sensor)",
        ),
        "release_abort_on_replay_fail": Param(
            True,
            type="boolean",
            description="shadow/canary: a replay that fails (the challenger answers the "
            "champion's logged requests too differently) aborts the release before any "
            "live request. false: the replay is evidence and the shadow stage decides",
        ),
        # -- monitoring at deployment
        **_drift_params(window_description="Inference log window compared at deployment"),
        # -- notifications
        **_notification_params("E-mail recipients"),
        "retrain_reason": Param(
            None,
            type=["null", "string"],
            description="Set by ml_model_monitoring when drift triggers this run",
        ),
    }


def _notification_params(email_description: str) -> dict[str, Param]:
    """The notification channels of every DAG (orchestration/alerts.py): Slack, e-mail,
    Apprise's tagged URLs and Jira."""
    return {
        "slack_conn_id": Param(SLACK_CONN_ID, type=["null", "string"]),
        "smtp_conn_id": Param(SMTP_CONN_ID, type=["null", "string"]),
        "email_to": Param([], type="array", description=email_description),
        "apprise_conn_id": Param(
            APPRISE_CONN_ID,
            type=["null", "string"],
            description="Apprise connection: tagged URLs (Teams Workflows, Discord, PagerDuty, "
            "...), each notified when tagged with the event or its severity",
        ),
        "jira_conn_id": Param(
            JIRA_CONN_ID,
            type=["null", "string"],
            description="Jira connection (extra project = the project key): a ticket per failure",
        ),
    }


def monitoring_params() -> dict[str, Param]:
    """Params of `ml_model_monitoring`."""
    return {
        "model_name": Param(
            get_settings().model_name, type="string", description="Registered model to watch"
        ),
        "current_source": Param(
            "inference_log",
            type="string",
            description='"inference_log" (the model API\'s log) or a CSV/Parquet batch path or URI',
        ),
        **_drift_params(window_description="Inference log window, back from the logical date"),
        "retrain_cooldown_hours": Param(
            12,
            type="number",
            minimum=0,
            description="Do not request another retraining of the same version within this time",
        ),
        "live_window_hours": Param(
            168,
            type="number",
            exclusiveMinimum=0,
            description="Live performance: the logged answers of this many hours back are "
            "joined to their true labels (labels come late)",
        ),
        "min_live_accuracy": Param(
            None,
            type=["null", "number"],
            minimum=0,
            maximum=1,
            description="Retrain when the champion's live accuracy is below this (classifiers; "
            "null: live accuracy is reported, never acted on)",
        ),
        "max_live_rmse_ratio": Param(
            None,
            type=["null", "number"],
            exclusiveMinimum=0,
            description="Retrain when the champion's live RMSE is above this times its test "
            "RMSE (regressors; null: reported, never acted on)",
        ),
        "min_live_labels": Param(
            50,
            type="integer",
            minimum=1,
            description="Labelled answers needed before the live rules are judged",
        ),
        **_notification_params("Drift e-mail recipients"),
    }


def batch_scoring_params() -> dict[str, Param]:
    """Params of `ml_batch_scoring`."""
    settings = get_settings()
    drift = _drift_params(window_description="")
    drift.pop("drift_window_hours")  # a batch is its own window
    return {
        "model_name": Param(
            settings.model_name,
            type="string",
            description="Registered model whose champion scores the batch (pinned at the start)",
        ),
        "input_uri": Param(
            batch_incoming_uri(settings),
            type="string",
            description="The table to score: a Parquet or CSV file, or a folder of parts, "
            "as a path or any storage URI (s3://, gs://, abfs://)",
        ),
        "sensor_poke_interval_seconds": Param(30, type="integer", minimum=1),
        "sensor_timeout_seconds": Param(
            6 * 3600, type="integer", minimum=1, maximum=SENSOR_MAX_TIMEOUT_SECONDS
        ),
        "key_columns": Param(
            [],
            type="array",
            description="Input columns written with each prediction; empty: the id-like "
            "columns (id, *_id, *_key, ...), else the row number in its file",
        ),
        "non_null_columns": Param(
            [],
            type="array",
            description="Columns that must have a value: a row without one goes to the "
            "rejects file (the contract's non-nullable columns always do)",
        ),
        "strict_categories": Param(
            False,
            type="boolean",
            description="Reject rows with a category never seen in training (default: "
            "scored, the model ignores unknown categories)",
        ),
        "part_rows": Param(
            1_000_000,
            type="integer",
            minimum=1,
            description="About this many rows per part (a mapped task); Parquet splits at "
            "row groups, a CSV file is one part",
        ),
        "chunk_rows": Param(
            65_536,
            type="integer",
            minimum=1,
            maximum=1_048_576,
            description="Rows read and scored at a time: bounds each part's memory",
        ),
        **drift,
        **_notification_params("Drift e-mail recipients"),
    }
