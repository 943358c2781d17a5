"""The model registry: one registered model, versions moved with aliases (never stages).

Aliases: `challenger` (the version this DAG run registered), `champion` (what the model
API serves, `models:/<name>@champion`) and `previous_champion` (where `champion` was
before the last promotion: the rollback target).

Every function takes `tracking_uri` (keyword, optional: default is whatever MLflow is
already configured with) and is safe to repeat:

* `register_challenger` creates at most one version per Airflow run and MLflow run — the
  version is created with its `airflow_run_id` tag in the same request, so a retried try
  (the server went away after creating it, or the client resent the request) finds it,
  waits for it if still pending, drops a failed registration, and keeps only the oldest of
  duplicates; `challenger` moves last, once the version is READY and tagged;
* `promote_to_champion` of the version that already is champion changes nothing;
* `rollback_champion` twice leaves `champion` on the same previous version.
"""

from __future__ import annotations

import json
import math
import time
from typing import TYPE_CHECKING, Any

from include.ml_pipeline.names import (
    AIRFLOW_RUN_TAG,
    CHALLENGER,
    CHAMPION,
    DECISION_TAG,
    FINGERPRINT_TAG,
    PREVIOUS_CHAMPION,
    REASONS_TAG,
)
from include.ml_pipeline.registry.mlflow_setup import configure_mlflow

if TYPE_CHECKING:  # pragma: no cover
    from mlflow import MlflowClient

    from include.ml_pipeline.payloads import Decision

_TAG_VALUE_LIMIT = 5000


def _client(tracking_uri: str | None) -> MlflowClient:
    if tracking_uri:
        return configure_mlflow(tracking_uri)
    from mlflow import MlflowClient

    return MlflowClient()


def _tag_value(value: Any) -> str:
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
    return text if len(text) <= _TAG_VALUE_LIMIT else text[: _TAG_VALUE_LIMIT - 3] + "..."


def _ensure_registered_model(client: MlflowClient, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
        return
    except MlflowException:
        pass
    try:
        client.create_registered_model(
            name, description="Tabular model trained by ml_model_deployment_advanced."
        )
    except MlflowException:
        client.get_registered_model(name)  # created concurrently; anything else re-raises


def _versions_for_run(
    client: MlflowClient, model_name: str, airflow_run_id: str, mlflow_run_id: str | None
) -> list:
    """Versions of `model_name` tagged with `airflow_run_id` (and made from `mlflow_run_id`
    when given), oldest first."""
    found = []
    page_token = None
    while True:
        page = client.search_model_versions(
            f"name = '{model_name}'", max_results=200, page_token=page_token
        )
        found += [
            v
            for v in page
            if v.tags.get(AIRFLOW_RUN_TAG) == airflow_run_id
            and (mlflow_run_id is None or v.run_id == mlflow_run_id)
        ]
        page_token = page.token
        if not page_token:
            break
    return sorted(found, key=lambda v: int(v.version))


def find_version_for_run(
    model_name: str,
    airflow_run_id: str,
    *,
    mlflow_run_id: str | None = None,
    tracking_uri: str | None = None,
) -> str | None:
    """The (oldest) version registered by this Airflow run — from this MLflow run when
    `mlflow_run_id` is given — that did not fail registration, or None."""
    client = _client(tracking_uri)
    usable = [
        v
        for v in _versions_for_run(client, model_name, airflow_run_id, mlflow_run_id)
        if v.status != "FAILED_REGISTRATION"
    ]
    return str(usable[0].version) if usable else None


def _delete_version(client: MlflowClient, model_name: str, version: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.delete_model_version(model_name, version)
    except MlflowException:
        try:
            client.get_model_version(model_name, version)
        except MlflowException:
            return  # a concurrent try deleted it already
        raise


def source_run_id(model_uri: str, *, tracking_uri: str | None = None) -> str | None:
    """The MLflow run that logged `model_uri` (`runs:/<run>/...` or a logged model
    `models:/m-...`), None when it cannot be told."""
    if model_uri.startswith("runs:/"):
        return model_uri.removeprefix("runs:/").split("/", 1)[0] or None
    model_id = model_uri.removeprefix("models:/")
    if not model_uri.startswith("models:/m-") or "/" in model_id or "@" in model_id:
        return None
    return _client(tracking_uri).get_logged_model(model_id).source_run_id


def _settle(
    client: MlflowClient,
    model_name: str,
    airflow_run_id: str,
    mlflow_run_id: str | None,
    await_seconds: int,
) -> str | None:
    """The one version of this run: failed registrations and younger duplicates deleted,
    a pending one waited for (bounded). None when there is none."""
    deadline = time.monotonic() + await_seconds
    while True:
        versions = _versions_for_run(client, model_name, airflow_run_id, mlflow_run_id)
        for failed in [v for v in versions if v.status == "FAILED_REGISTRATION"]:
            _delete_version(client, model_name, failed.version)
        versions = [v for v in versions if v.status != "FAILED_REGISTRATION"]
        if not versions:
            return None
        keep, *extra = versions
        for duplicate in extra:  # a resent create request, or a concurrent try
            _delete_version(client, model_name, duplicate.version)
        if keep.status == "READY":
            return str(keep.version)
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"version {keep.version} of {model_name!r} is still {keep.status} after "
                f"{await_seconds} s"
            )
        time.sleep(1.0)


#: How a store says two writers inserted the same alias at once (SQLite, PostgreSQL, MySQL).
_DUPLICATE_ROW = ("unique constraint", "duplicate entry")


def _set_alias(client: MlflowClient, model_name: str, alias: str, version: str | int) -> None:
    """`alias` -> `version`. MLflow's SQL store looks for the alias, then inserts or updates
    it: two concurrent first writers both insert and one fails on the unique key (seen in
    CI with four racing `register_challenger`s). That one writes again, and now updates
    the row; any other error is raised at once."""
    from mlflow.exceptions import MlflowException

    for attempt in range(3):
        try:
            client.set_registered_model_alias(model_name, alias, str(version))
            return
        except MlflowException as exc:
            if attempt == 2 or not any(t in str(exc).lower() for t in _DUPLICATE_ROW):
                raise


def register_challenger(
    model_uri: str,
    model_name: str,
    *,
    airflow_run_id: str,
    mlflow_run_id: str | None = None,
    metrics: dict[str, float] | None = None,
    data_fingerprint: str | None = None,
    tags: dict[str, Any] | None = None,
    tracking_uri: str | None = None,
    await_seconds: int = 300,
) -> str:
    """Register `model_uri` as a new version of `model_name`, alias it `challenger`, and
    return the version (as a string).

    If a version tagged with this `airflow_run_id` (made from `mlflow_run_id`, when given:
    default: the run that logged `model_uri`) exists already, that version is used (re-tagged)
    instead of creating a second one. The version is tagged with `airflow_run_id`,
    `data_fingerprint`, each metric as `test_<name>`, and any extra `tags`; `challenger`
    moves only after all of that succeeded.
    """
    import mlflow

    if "'" in model_name or "'" in airflow_run_id:
        raise ValueError("model_name and airflow_run_id must not contain quotes")
    client = _client(tracking_uri)
    all_tags = {AIRFLOW_RUN_TAG: airflow_run_id}
    if data_fingerprint:
        all_tags[FINGERPRINT_TAG] = data_fingerprint
    for key, value in (metrics or {}).items():
        all_tags[f"test_{key}"] = _tag_value(float(value))
    for key, value in (tags or {}).items():
        all_tags[str(key)] = _tag_value(value)

    if mlflow_run_id is None:
        mlflow_run_id = source_run_id(model_uri, tracking_uri=tracking_uri)
    version = _settle(client, model_name, airflow_run_id, mlflow_run_id, await_seconds)
    if version is None:
        _ensure_registered_model(client, model_name)
        mlflow.register_model(
            model_uri, model_name, await_registration_for=await_seconds, tags=all_tags
        )
        # The oldest of this run's versions: ours, or one a resent request or a
        # concurrent try created too (the others are deleted).
        version = _settle(client, model_name, airflow_run_id, mlflow_run_id, await_seconds)
        if version is None:
            raise RuntimeError(
                f"{model_uri} was registered but no version of {model_name!r} "
                f"is tagged {AIRFLOW_RUN_TAG}={airflow_run_id}"
            )
    else:
        for key, tag in all_tags.items():
            client.set_model_version_tag(model_name, version, key, tag)
    _set_alias(client, model_name, CHALLENGER, version)
    return version


def get_alias_version(
    model_name: str, alias: str, *, tracking_uri: str | None = None
) -> str | None:
    """The version `alias` points to, or None (also when the model does not exist)."""
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
    try:
        return str(client.get_model_version_by_alias(model_name, alias).version)
    except MlflowException:
        return None


def describe_version(
    model_name: str, version: str | int, *, tracking_uri: str | None = None
) -> dict[str, Any]:
    """JSON-able facts of a version: version, run_id, source, status, aliases, tags."""
    client = _client(tracking_uri)
    mv = client.get_model_version(model_name, str(version))
    return {
        "name": model_name,
        "version": str(mv.version),
        "run_id": mv.run_id,
        "source": mv.source,
        "status": mv.status,
        "aliases": sorted(mv.aliases or []),
        "tags": dict(mv.tags or {}),
        "model_uri": f"models:/{model_name}/{mv.version}",
    }


def promote_to_champion(
    model_name: str, version: str | int, *, tracking_uri: str | None = None
) -> dict[str, str | None]:
    """Point `champion` at `version`, keeping the former champion as `previous_champion`.

    Returns `{"previous": <former champion or None>, "champion": version}`. Promoting the
    current champion again changes nothing and reports the existing `previous_champion`.
    """
    client = _client(tracking_uri)
    version = str(version)
    client.get_model_version(model_name, version)  # fails clearly if it does not exist
    current = get_alias_version(model_name, CHAMPION, tracking_uri=tracking_uri)
    if current == version:
        previous = get_alias_version(model_name, PREVIOUS_CHAMPION, tracking_uri=tracking_uri)
        return {"previous": previous, "champion": version}
    # previous_champion first: a crash in between leaves champion untouched.
    client.set_model_version_tag(model_name, version, "promoted_at", _now())
    if current is not None:
        _set_alias(client, model_name, PREVIOUS_CHAMPION, current)
    _set_alias(client, model_name, CHAMPION, version)  # the last write
    return {"previous": current, "champion": version}


def rollback_champion(
    model_name: str, *, tracking_uri: str | None = None, reason: str | None = None
) -> str:
    """Point `champion` back at `previous_champion`; return the version now champion.

    The demoted version gets a `rolled_back_at` tag (and `rollback_reason`). Raises
    `LookupError` if there is no `previous_champion`. Repeating it is a no-op.
    """
    client = _client(tracking_uri)
    previous = get_alias_version(model_name, PREVIOUS_CHAMPION, tracking_uri=tracking_uri)
    if previous is None:
        raise LookupError(f"model {model_name!r} has no {PREVIOUS_CHAMPION!r} to roll back to")
    current = get_alias_version(model_name, CHAMPION, tracking_uri=tracking_uri)
    if current == previous:
        return previous
    if current is not None:
        client.set_model_version_tag(model_name, current, "rolled_back_at", _now())
        if reason:
            client.set_model_version_tag(model_name, current, "rollback_reason", _tag_value(reason))
    _set_alias(client, model_name, CHAMPION, previous)
    return previous


def remove_champion(model_name: str, *, tracking_uri: str | None = None) -> None:
    """Take the `champion` alias away (a first deployment failed: nothing to go back to),
    so no one serves a version that failed."""
    _client(tracking_uri).delete_registered_model_alias(model_name, CHAMPION)


def record_decision(
    model_name: str,
    version: str | int,
    decision: Decision | dict[str, Any],
    *,
    tracking_uri: str | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Store a deploy decision on the version: tags `deployment_decision`
    (`deploy`/`reject`), `deployment_reasons` (JSON list), `decided_at`, plus `extra`."""
    data = decision.to_dict() if hasattr(decision, "to_dict") else dict(decision)
    tags = {
        DECISION_TAG: "deploy" if data["deploy"] else "reject",
        REASONS_TAG: list(data.get("reasons", [])),
        "decided_at": _now(),
        **{str(key): value for key, value in (extra or {}).items()},
    }
    tag_version(model_name, version, tags, tracking_uri=tracking_uri)


def tag_version(
    model_name: str, version: str | int, tags: dict[str, Any], *, tracking_uri: str | None = None
) -> None:
    """Set `tags` on a version (values as text; long ones cut to the tag limit)."""
    client = _client(tracking_uri)
    for key, value in tags.items():
        client.set_model_version_tag(model_name, str(version), str(key), _tag_value(value))


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
