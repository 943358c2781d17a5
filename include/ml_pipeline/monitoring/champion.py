"""The model being watched: the registry's champion version and what a drift check needs
from its MLflow metadata (feature spec, training split, test metrics, the fitted model).

The feature spec comes from the model metadata `feature_spec`, else the version tag
`feature_spec`, else the model signature; the training split from the version tag
`train_path`, else the `training` dataset input of the version's run.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from include.ml_pipeline.errors import MonitoringError
from include.ml_pipeline.features import FeatureSpec
from include.ml_pipeline.names import (
    CHAMPION,
    FEATURE_SPEC_TAG,
    FINGERPRINT_TAG,
    TRAIN_PATH_TAG,
    VERSION_CANDIDATE_TAG,
)
from include.ml_pipeline.payloads import Champion

log = logging.getLogger(__name__)

TRAINING_CONTEXT = "training"


def read_champion(model_name: str, *, tracking_uri: str, alias: str = CHAMPION) -> Champion | None:
    """`models:/<model_name>@<alias>` as a `Champion` (its metrics are the version's
    `test_*` tags, unprefixed), or None when it does not exist."""
    from include.ml_pipeline.registry.registry import describe_version, get_alias_version

    version = get_alias_version(model_name, alias, tracking_uri=tracking_uri)
    if version is None:
        return None
    facts = describe_version(model_name, version, tracking_uri=tracking_uri)
    tags = facts["tags"]
    model_uri = f"models:/{model_name}/{version}"
    spec = champion_feature_spec(model_uri, tags)
    train_path = tags.get(TRAIN_PATH_TAG) or training_input_source(
        facts["run_id"], tracking_uri=tracking_uri
    )
    metrics = {}
    for key, value in tags.items():
        if key.startswith("test_"):
            try:
                metrics[key.removeprefix("test_")] = float(value)
            except ValueError:
                continue
    return Champion(
        model_name=model_name,
        version=str(version),
        alias=alias,
        run_id=facts["run_id"],
        model_uri=model_uri,
        feature_spec=spec,
        train_path=train_path,
        data_fingerprint=tags.get(FINGERPRINT_TAG),
        metrics={k: v for k, v in metrics.items() if math.isfinite(v)},
        candidate=tags.get(VERSION_CANDIDATE_TAG),
    )


def champion_feature_spec(model_uri: str, tags: dict[str, str] | None = None) -> FeatureSpec:
    """The model's feature spec: MLmodel metadata, else the version tag, else the signature."""
    from mlflow.models import get_model_info

    info = get_model_info(model_uri)
    metadata = info.metadata or {}
    if metadata.get("feature_spec"):
        return FeatureSpec.from_dict(metadata["feature_spec"])
    if tags and tags.get(FEATURE_SPEC_TAG):
        return FeatureSpec.from_dict(json.loads(tags[FEATURE_SPEC_TAG]))
    signature = info.signature
    if signature is None or signature.inputs is None:
        raise MonitoringError(
            f"{model_uri} has no feature spec (model metadata `feature_spec`, version tag "
            f"`{FEATURE_SPEC_TAG}`) and no input signature; cannot tell its features"
        )
    numeric: list[str] = []
    categorical: list[str] = []
    for col in signature.inputs.inputs:
        kind = str(getattr(col.type, "name", col.type)).lower()
        (categorical if kind in ("string", "boolean") else numeric).append(col.name)
    return FeatureSpec(target="", numeric=numeric, categorical=categorical)


def training_input_source(run_id: str | None, *, tracking_uri: str) -> str | None:
    """The source path of the `training` dataset input logged on `run_id`, if any."""
    if not run_id:
        return None
    from include.ml_pipeline.registry.mlflow_setup import configure_mlflow

    client = configure_mlflow(tracking_uri)
    try:
        run = client.get_run(run_id)
    except Exception as exc:  # deleted run, remote store hiccup: the tag is the main way
        log.warning("could not read run %s for its training input: %r", run_id, exc)
        return None
    for item in run.inputs.dataset_inputs if run.inputs else []:
        contexts = {t.value for t in item.tags if t.key == "mlflow.data.context"}
        if TRAINING_CONTEXT not in contexts:
            continue
        try:
            source = json.loads(item.dataset.source)
        except (TypeError, ValueError):
            continue
        uri = source.get("uri") or source.get("path") if isinstance(source, dict) else None
        if uri:
            return str(uri)
    return None


def load_model(model_uri: str, *, tracking_uri: str) -> Any:
    """The champion's fitted scikit-learn pipeline (the registry is trusted, as in serving)."""
    from include.ml_pipeline.registry.mlflow_setup import configure_mlflow, load_sklearn_model

    configure_mlflow(tracking_uri)
    return load_sklearn_model(model_uri)
