"""The serving artifact: a compiled predictor written as plain data (JSON + ONNX) reads
back into a predictor that reproduces the scikit-learn pipeline, refuses altered files,
and is published next to a model version (run artifact + version tag)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from include.ml_pipeline.features import coerce_features
from include.ml_pipeline.serving.batch import batch_from_frame, concat_batches
from include.ml_pipeline.serving.compiled.compiler import compile_pipeline
from include.ml_pipeline.serving.compiled.predictor import UnsupportedPipeline
from include.ml_pipeline.serving.compiled.verify import verification_batch, verify_predictor
from include.ml_pipeline.serving.loading.artifact import (
    TAG,
    ArtifactError,
    publish,
    read_predictor,
    write_predictor,
)
from tests.support.models import fit_pipeline, training_frame


def _compiled(kind, labels="str", seed=5):
    frame, spec = training_frame(1200, seed=seed, labels=labels)
    pipeline = fit_pipeline(frame, spec, kind)
    compiled = compile_pipeline(pipeline, spec.numeric, spec.categorical)
    sample = concat_batches(
        batch_from_frame(coerce_features(frame.head(200), spec), spec.numeric, spec.categorical),
        verification_batch(pipeline, spec.numeric, spec.categorical),
    )
    return pipeline, compiled, sample


@pytest.mark.parametrize(
    ("kind", "labels"), [("hgb", "str"), ("hgb", "multi_int"), ("lr", "str"), ("lr", "multi")]
)
def test_round_trip_reproduces_the_pipeline(tmp_path, kind, labels):
    pipeline, compiled, sample = _compiled(kind, labels)
    digests = write_predictor(compiled, tmp_path)
    assert set(digests) == (
        {"predictor.json", "trees.onnx"} if kind == "hgb" else {"predictor.json"}
    )
    restored = read_predictor(tmp_path, digests)
    assert verify_predictor(restored, pipeline, sample) is None
    got, expected = restored.predict(sample), compiled.predict(sample)
    assert got.labels == expected.labels
    assert np.abs(got.proba - expected.proba).max() == 0.0
    assert restored.estimator_path == compiled.estimator_path
    # plain data: the document is JSON, nothing is pickled
    document = json.loads((tmp_path / "predictor.json").read_text())
    assert document["format"].startswith("ml_pipeline.compiled_predictor/")


def test_altered_or_missing_files_are_refused(tmp_path):
    _, compiled, _ = _compiled("hgb")
    digests = write_predictor(compiled, tmp_path)
    (tmp_path / "trees.onnx").write_bytes((tmp_path / "trees.onnx").read_bytes() + b"\0")
    with pytest.raises(ArtifactError, match=r"trees\.onnx does not match the sha256"):
        read_predictor(tmp_path, digests)
    (tmp_path / "predictor.json").unlink()
    with pytest.raises(ArtifactError, match=r"predictor\.json is not readable"):
        read_predictor(tmp_path, digests)


def test_predictors_without_a_plain_form_are_not_written(tmp_path):
    _, compiled, _ = _compiled("rf")
    with pytest.raises(UnsupportedPipeline):
        write_predictor(compiled, tmp_path)


class _RecordingClient:
    def __init__(self):
        self.artifacts, self.tags = {}, {}

    def log_artifacts(self, run_id, local_dir, artifact_path):
        from pathlib import Path

        self.artifacts[(run_id, artifact_path)] = {
            p.name: p.read_bytes() for p in Path(local_dir).iterdir()
        }

    def set_model_version_tag(self, name, version, key, value):
        self.tags[(name, version, key)] = value


def test_publish_checks_the_read_back_predictor_before_tagging():
    pipeline, compiled, sample = _compiled("hgb")
    client = _RecordingClient()
    tag = publish(client, "m", "3", "run1", compiled, pipeline, sample)
    assert tag["uri"] == "runs:/run1/serving/v3"
    assert json.loads(client.tags[("m", "3", TAG)]) == tag
    assert set(client.artifacts[("run1", "serving/v3")]) == {"predictor.json", "trees.onnx"}
    # a predictor that does not reproduce the pipeline is neither logged nor tagged
    other_pipeline, _, _ = _compiled("hgb", seed=9)
    client = _RecordingClient()
    with pytest.raises(ArtifactError, match="does not reproduce the pipeline"):
        publish(client, "m", "4", "run1", compiled, other_pipeline, sample)
    assert client.artifacts == {}
    assert client.tags == {}
