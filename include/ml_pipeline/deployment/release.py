"""Release: the challenger built exactly as the API will serve it, then promoted.

The compiled fast path is verified against the scikit-learn pipeline at load and stored as
the version's serving artifact (`serving/loading/artifact.py`: the API then starts without
scikit-learn); the challenger is replayed on the champion's newest live requests
(`deployment/replay.py`: agreement and shifts, recorded as the manifest's `replay`; evidence,
never a veto); only then does `champion` move (the old one stays `previous_champion`) and
the manifest is written under the storage root (`manifest_uri`). A failure before the
promotion leaves `champion` where it was.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from include.ml_pipeline import storage
from include.ml_pipeline.config import Settings
from include.ml_pipeline.names import CHALLENGER, CHAMPION
from include.ml_pipeline.payloads import DecidedModel, Release


def prepare_release(
    settings: Settings,
    decided: DecidedModel,
    *,
    airflow: dict[str, Any],
    staged: str | None = None,
) -> Release:
    """Verify the challenger as served, promote it to champion, write the manifest.
    `staged` (`shadow` / `canary`): the challenger meets live traffic first
    (`experiment_run.py`), so `champion` does not move here; the manifest's `release`
    says how and carries what the live decision needs (problem type, label set)."""
    from include.ml_pipeline.deployment.replay import replay_live_traffic
    from include.ml_pipeline.registry.registry import (
        describe_version,
        get_alias_version,
        promote_to_champion,
    )
    from include.ml_pipeline.serving.api.labels import label_target
    from include.ml_pipeline.serving.loading.artifact import publish_served
    from include.ml_pipeline.serving.loading.load import load_served_model
    from include.ml_pipeline.serving.loading.worker import api_path

    name, version = decided.registered.model_name, decided.registered.version
    served = load_served_model(settings.mlflow_tracking_uri, name, CHALLENGER)
    if str(served.version) != str(version):
        raise RuntimeError(
            f"alias {CHALLENGER} of {name!r} points to version {served.version}, not {version}; "
            "another run registered a newer challenger"
        )
    artifact = publish_served(settings.mlflow_tracking_uri, served)
    # before any client sees it: the challenger on the champion's newest live requests
    champion = get_alias_version(name, CHAMPION, tracking_uri=settings.mlflow_tracking_uri)
    replay = replay_live_traffic(settings.inference_log_uri, served, champion)
    if staged:
        promotion: dict[str, Any] = {"previous": None}
        release: dict[str, Any] | None = {
            "strategy": staged,
            "champion": champion,
            "regression": served.spec.is_regression,
            "label_target": asdict(label_target(served)),
        }
    else:
        release = None
        promotion = promote_to_champion(name, version, tracking_uri=settings.mlflow_tracking_uri)
    info = describe_version(name, version, tracking_uri=settings.mlflow_tracking_uri)
    # as the model API serves it (the scikit-learn path runs in an isolated worker there)
    path, reason = api_path(served.predict_path, served.fallback_reason)
    manifest = {
        "model_name": name,
        "version": str(version),
        "model_uri": f"models:/{name}/{version}",
        "alias": CHALLENGER if staged else CHAMPION,
        "previous_champion": promotion.get("previous"),
        "run_id": served.run_id,
        "source": served.source,
        "signature": {
            "numeric": served.spec.numeric,
            "categorical": served.spec.categorical,
            "target": served.spec.target,
            "classes": [c.item() if hasattr(c, "item") else c for c in served.classes],
        },
        "serving": {
            "predict_path": path,
            "fallback_reason": reason,
            "verified_against_pipeline": True,
            "serving_artifact": artifact,
        },
        "metrics": served.metrics,
        "replay": replay.to_dict(),
        "tags": info.get("tags", {}),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "airflow": airflow,
    }
    if release is not None:
        manifest["release"] = release
    uri = storage.write_json(manifest_uri(settings, name, version), manifest)
    manifest["manifest_uri"] = uri
    return Release(
        registered=decided.registered,
        decision=decided.decision,
        manifest=manifest,
        manifest_uri=uri,
    )


def manifest_uri(settings: Settings, name: str, version: str) -> str:
    """`<storage_uri>/deployments/<name>-v<version>.json`: one manifest per released
    version (written whole, so a reader never sees half of it)."""
    return storage.join(settings.storage_uri, "deployments", f"{name}-v{version}.json")
