"""Resolve and download a registered model version, and read what serving needs from it
(feature spec, input example, run metrics, serving artifact, input contract) without
deserialising the model. The API runs it as a short-lived child process, the only step of
its loading path that imports MLflow:

    python -m include.ml_pipeline.serving.loading.fetch TRACKING_URI NAME ALIAS

prints one line `FETCH_RESULT <json>` (what `fetch` returns), or
`FETCH_RESULT {"error": ...}` and exits 1.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

from include.ml_pipeline.features import FeatureSpec

MARKER = "FETCH_RESULT "
log = logging.getLogger("ml_pipeline.serving")


class ModelLoadError(RuntimeError):
    """The alias does not resolve, or the model cannot be loaded or served."""


def fetch(tracking_uri: str, name: str, alias: str, pinned: str | None = None) -> dict[str, Any]:
    """Resolve `models:/<name>@<alias>` now and download it; no model is deserialised.
    With `pinned` (a version number), that version is downloaded instead (a batch run pins
    the version the alias named when it started).

    Returns the concrete version, run id, source, the local directory MLflow downloaded,
    the sklearn flavor's model file, serialization format and skops trusted types, the
    feature spec (metadata `feature_spec`, else the signature), the logged input example
    (`{"columns", "data"}`), the run's metrics, the downloaded serving artifact
    (`artifact.py`) when the version has one and the version's input contract
    (`registry.contract`). Raises `ModelLoadError`."""
    try:
        import mlflow
        from mlflow.models import Model

        from include.ml_pipeline.registry.mlflow_setup import configure_mlflow

        # `models:/` downloads resolve through the global registry URI: set it, or a
        # child started without MLFLOW_TRACKING_URI would read MLflow's default store.
        client = configure_mlflow(tracking_uri)
        try:
            if pinned is not None:
                version = client.get_model_version(name, str(pinned))
            else:
                version = client.get_model_version_by_alias(name, alias)
        except Exception as exc:
            wanted = f"models:/{name}/{pinned}" if pinned else f"models:/{name}@{alias}"
            raise ModelLoadError(f"{wanted} does not resolve: {exc}") from exc
        uri = f"models:/{name}/{version.version}"
        local = mlflow.artifacts.download_artifacts(artifact_uri=uri, tracking_uri=tracking_uri)
        meta = Model.load(os.path.join(local, "MLmodel"))
        flavor = (meta.flavors or {}).get("sklearn")
        if flavor is None:
            raise ModelLoadError(f"{uri} has no sklearn flavor; flavors: {sorted(meta.flavors)}")
        spec_dict = (meta.metadata or {}).get("feature_spec")
        if not spec_dict:
            spec_dict = _spec_from_signature(meta).to_dict()
        example = None
        try:
            # mlflow annotates it `str | None`; it returns the example as logged (a frame)
            frame: Any = meta.load_input_example(local)
            if frame is not None:
                split = frame.to_dict(orient="split")
                example = {"columns": [str(c) for c in split["columns"]], "data": split["data"]}
        except Exception as exc:
            log.warning("input example not readable: %s", exc)
        artifact = _download_serving_artifact(version, tracking_uri)
        contract = _contract(client, name, version)
        metrics: dict[str, float] = {}
        if version.run_id:
            try:
                metrics = dict(client.get_run(version.run_id).data.metrics)
            except Exception as exc:
                log.warning("cannot read metrics of run %s: %s", version.run_id, exc)
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"cannot load models:/{name}@{alias}: {exc!r}") from exc
    return {
        "name": name,
        "alias": alias,
        "version": str(version.version),
        "run_id": version.run_id,
        "source": version.source,
        "local_dir": local,
        "model_file": os.path.join(local, flavor["pickled_model"]),
        "serialization_format": flavor.get("serialization_format", "pickle"),
        "skops_trusted_types": flavor.get("skops_trusted_types"),
        "code": flavor.get("code"),
        "spec": spec_dict,
        "example": example,
        "metrics": metrics,
        "serving_artifact": artifact,
        "contract": contract,
    }


def _spec_from_signature(model_meta: Any) -> FeatureSpec:
    schema = model_meta.get_input_schema() if model_meta is not None else None
    if schema is None:
        raise ModelLoadError("the model has neither a 'feature_spec' metadata nor a signature")
    numeric, categorical = [], []
    for spec in schema.inputs:
        type_name = str(getattr(spec.type, "name", spec.type)).lower()
        if type_name in ("double", "float", "long", "integer"):
            numeric.append(spec.name)
        else:
            categorical.append(spec.name)
    return FeatureSpec(target="", numeric=numeric, categorical=categorical)


def _contract(client: Any, name: str, version: Any) -> dict[str, Any] | None:
    """The version's input contract (`registry.contract`), shown by `GET /model`; None,
    with a warning, when it cannot be read (it informs clients: serving goes on)."""
    from include.ml_pipeline.registry.contract import contract_of_version

    try:
        return contract_of_version(client, name, version)
    except Exception as exc:
        log.warning("input contract of v%s not readable: %r", version.version, exc)
        return None


def _download_serving_artifact(version: Any, tracking_uri: str) -> dict[str, Any] | None:
    """The version's serving artifact (see `artifact.py`) downloaded: `{"dir", "sha256"}`,
    or None when the version has none or it cannot be fetched (the API then compiles)."""
    import mlflow

    from include.ml_pipeline.serving.loading.artifact import FORMAT, TAG

    raw = (version.tags or {}).get(TAG)
    if not raw:
        return None
    try:
        tag = json.loads(raw)
        if tag.get("format") != FORMAT:
            log.warning(
                "serving artifact of v%s has format %r; compiling instead",
                version.version,
                tag.get("format"),
            )
            return None
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=tag["uri"], tracking_uri=tracking_uri
        )
    except Exception as exc:
        log.warning(
            "serving artifact of v%s not usable (%r); compiling instead", version.version, exc
        )
        return None
    return {"dir": local, "sha256": tag["sha256"]}


def main(argv: list[str] | None = None) -> int:
    import orjson

    tracking_uri, name, alias = (argv if argv is not None else sys.argv[1:])[:3]
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    try:
        result: dict[str, Any] = fetch(tracking_uri, name, alias)
        code = 0
    except Exception as exc:  # ModelLoadError or anything unexpected: report, exit 1
        result, code = {"error": str(exc)}, 1
    line = orjson.dumps(result, option=orjson.OPT_SERIALIZE_NUMPY, default=str)
    sys.stdout.write(MARKER + line.decode() + "\n")
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    raise SystemExit(main())
