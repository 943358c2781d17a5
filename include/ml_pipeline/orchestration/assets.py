"""Airflow Datasets (Assets on Airflow 3) shared by the DAGs: producers declare them as
outlets, consumers schedule on them.

| Dataset | produced by | consumed by |
|---|---|---|
| `RAW_DATA_DATASET` | `ml_model_deployment_advanced` (raw data loaded) | `ml_model_monitoring` |
| `INFERENCE_LOG_DATASET` | anything that sends traffic to the model API | `ml_model_monitoring` |
| `REGISTERED_MODEL_DATASET` | `ml_model_deployment_advanced` (new version registered) | - |
| `BATCH_INPUT_DATASET` | whatever drops a table in `batch_scoring/incoming` | `ml_batch_scoring` |
| `BATCH_PREDICTIONS_DATASET` | `ml_batch_scoring` (a batch's output complete) | - |

URIs are built from the settings (`include.ml_pipeline.config`), so producer and consumer
agree within one environment. Airflow only compares URIs as strings; it never reads them.
Light on purpose: DAG files import it at parse time (no pandas, mlflow, sklearn).
"""

from __future__ import annotations

from urllib.parse import quote

from include.ml_pipeline.config import get_settings
from include.ml_pipeline.orchestration.compat import Asset
from include.ml_pipeline.runs import batch_incoming_uri, batch_runs_uri, default_data_uri

_SETTINGS = get_settings()

RAW_DATA_URI = default_data_uri(_SETTINGS)
INFERENCE_LOG_URI = _SETTINGS.inference_log_uri
REGISTERED_MODEL_URI = f"mlflow://models/{quote(_SETTINGS.model_name, safe='')}"
BATCH_INPUT_URI = batch_incoming_uri(_SETTINGS)
BATCH_PREDICTIONS_URI = batch_runs_uri(_SETTINGS)

RAW_DATA_DATASET = Asset(RAW_DATA_URI, extra={"kind": "raw_data"})
INFERENCE_LOG_DATASET = Asset(INFERENCE_LOG_URI, extra={"kind": "inference_log"})
REGISTERED_MODEL_DATASET = Asset(REGISTERED_MODEL_URI, extra={"kind": "registered_model"})
BATCH_INPUT_DATASET = Asset(BATCH_INPUT_URI, extra={"kind": "batch_input"})
BATCH_PREDICTIONS_DATASET = Asset(BATCH_PREDICTIONS_URI, extra={"kind": "batch_predictions"})

__all__ = [
    "BATCH_INPUT_DATASET",
    "BATCH_INPUT_URI",
    "BATCH_PREDICTIONS_DATASET",
    "BATCH_PREDICTIONS_URI",
    "INFERENCE_LOG_DATASET",
    "INFERENCE_LOG_URI",
    "RAW_DATA_DATASET",
    "RAW_DATA_URI",
    "REGISTERED_MODEL_DATASET",
    "REGISTERED_MODEL_URI",
]
