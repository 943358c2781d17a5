"""The API's loader with serving artifacts (real child processes, real MLflow store):
a version's artifact is served at once and re-checked in the background; an altered
artifact is not used; an artifact that disagrees with the pipeline is replaced by the
predictor compiled and verified at load."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from include.ml_pipeline.features import coerce_features
from include.ml_pipeline.serving.batch import batch_from_frame
from include.ml_pipeline.serving.compiled.compiler import compile_pipeline
from include.ml_pipeline.serving.loading.artifact import TAG, write_predictor
from include.ml_pipeline.serving.loading.load import load_served_model, load_served_model_isolated
from tests.support.models import (
    fit_pipeline,
    register_model_version,
    training_frame,
)

# Child processes that import MLflow and scikit-learn, and a background re-check: minutes
# on a loaded 2-core machine, so not in make test-fast.
pytestmark = pytest.mark.services

NAME = "artifact_loading"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("artifact-store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    version = register_model_version(
        uri,
        NAME,
        kind="hgb",
        rows=2000,
        seed=4,
        artifact_location=(root / "artifacts").as_uri(),
        serving_artifact=True,
    )
    return uri, version


def _client(uri):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _wait_for_check(served, timeout=180.0):
    deadline = time.monotonic() + timeout
    while served.verification.get("load_check") == "running":
        assert time.monotonic() < deadline, "background check did not finish"
        time.sleep(0.1)
    return served.verification["load_check"]


def _batch(spec):
    frame, _ = training_frame(300, seed=21)
    return batch_from_frame(coerce_features(frame, spec), spec.numeric, spec.categorical)


def _set_tag(uri, version, tag):
    _client(uri).set_model_version_tag(NAME, version, TAG, json.dumps(tag))


def test_artifact_is_served_then_rechecked(store):
    uri, version = store
    tag = json.loads(_client(uri).get_model_version(NAME, version).tags[TAG])
    served = load_served_model_isolated(uri, NAME, "champion")
    assert served.verification["source"] == "serving_artifact"
    assert served.predict_path == "compiled:onnx-hgb"
    assert _wait_for_check(served) == "passed"
    reference = load_served_model(uri, NAME, "champion")  # compiled in this process
    batch = _batch(reference.spec)
    got, expected = served.predictor.predict(batch), reference.predictor.predict(batch)
    assert got.labels == expected.labels
    assert np.abs(got.proba - expected.proba).max() == 0.0
    assert tag["uri"].endswith(f"/serving/v{version}")


def test_altered_artifact_is_not_used(store):
    uri, version = store
    tag = json.loads(_client(uri).get_model_version(NAME, version).tags[TAG])
    try:
        _set_tag(uri, version, {**tag, "sha256": {**tag["sha256"], "trees.onnx": "0" * 64}})
        served = load_served_model_isolated(uri, NAME, "champion")
        assert "source" not in served.verification  # compiled at load instead
        assert served.verification["passed"] is True
        assert served.predict_path == "compiled:onnx-hgb"
    finally:
        _set_tag(uri, version, tag)


def test_artifact_that_disagrees_with_the_pipeline_is_replaced(store, tmp_path):
    uri, version = store
    client = _client(uri)
    mv = client.get_model_version(NAME, version)
    good = mv.tags[TAG]
    # another model's predictor, stored with correct digests: only the re-check can tell
    frame, spec = training_frame(1500, seed=77)
    wrong = compile_pipeline(fit_pipeline(frame, spec, "hgb", 77), spec.numeric, spec.categorical)
    digests = write_predictor(wrong, tmp_path)
    client.log_artifacts(mv.run_id, str(tmp_path), artifact_path="serving/wrong")
    try:
        _set_tag(
            uri,
            version,
            {
                "format": json.loads(good)["format"],
                "uri": f"runs:/{mv.run_id}/serving/wrong",
                "sha256": digests,
            },
        )
        served = load_served_model_isolated(uri, NAME, "champion")
        assert served.verification["source"] == "serving_artifact"
        assert _wait_for_check(served).startswith("failed")
        assert served.fallback_reason.startswith("serving artifact rejected at load")
        reference = load_served_model(uri, NAME, "champion")
        batch = _batch(reference.spec)
        assert served.predictor.predict(batch).labels == reference.predictor.predict(batch).labels
        assert served.verification["passed"] is True
    finally:
        client.set_model_version_tag(NAME, version, TAG, good)
