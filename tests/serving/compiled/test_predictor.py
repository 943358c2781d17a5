"""The compiled numpy predictor equals the scikit-learn pipeline (labels exactly,
probabilities within 1e-6), and unknown structures fall back to the pipeline."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from include.ml_pipeline.features import coerce_features
from include.ml_pipeline.serving.batch import Batch, batch_from_frame, concat_batches
from include.ml_pipeline.serving.compiled.compiler import compile_pipeline
from include.ml_pipeline.serving.compiled.predictor import CompiledPredictor, SklearnPredictor
from include.ml_pipeline.serving.compiled.verify import (
    PROBA_TOLERANCE,
    verification_batch,
    verify_predictor,
)
from include.ml_pipeline.serving.loading.served import build_served_model
from tests.support.models import fit_pipeline, training_frame


@pytest.mark.parametrize("labels", ["str", "int", "multi", "multi_int"])
@pytest.mark.parametrize("kind", ["lr", "hgb", "rf"])
def test_compiled_equals_pipeline(kind, labels):
    frame, spec = training_frame(1500, seed=5, labels=labels)
    pipeline = fit_pipeline(frame, spec, kind)
    compiled = compile_pipeline(pipeline, spec.numeric, spec.categorical)
    X = coerce_features(frame.head(300), spec)
    batch = concat_batches(
        batch_from_frame(X, spec.numeric, spec.categorical),
        verification_batch(pipeline, spec.numeric, spec.categorical),
    )
    assert verify_predictor(compiled, pipeline, batch) is None
    got = compiled.predict(batch)
    frame_in = batch.to_frame()
    assert got.labels == np.asarray(pipeline.predict(frame_in)).tolist()
    assert np.abs(got.proba - pipeline.predict_proba(frame_in)).max() <= PROBA_TOLERANCE
    # label types survive: str labels stay str, int labels stay int (JSON-ready)
    expected_type = str if labels in ("str", "multi") else int
    assert all(type(label) is expected_type for label in got.labels)
    # the predictor survives pickling (how the compile worker hands it to the server)
    restored = pickle.loads(pickle.dumps(compiled))
    assert restored.predict(batch).labels == got.labels
    assert np.abs(restored.predict(batch).proba - got.proba).max() == 0.0
    # single rows agree with the batch
    for i in (0, 5, 17):
        one = Batch(
            batch.numeric_columns,
            batch.categorical_columns,
            batch.numeric[i : i + 1],
            tuple([c[i]] for c in batch.categorical),
        )
        assert compiled.predict(one).labels == [got.labels[i]]


def test_served_model_uses_compiled_path():
    frame, spec = training_frame(1500, seed=6)
    pipeline = fit_pipeline(frame, spec, "hgb")
    served = build_served_model(
        pipeline,
        spec,
        name="m",
        version="1",
        alias="champion",
        max_rows=100,
        example=coerce_features(frame.head(5), spec),
    )
    assert isinstance(served.predictor, CompiledPredictor)
    assert served.predict_path == "compiled:onnx-hgb"
    assert served.fallback_reason is None


def test_unknown_structure_falls_back_to_pipeline():
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import MinMaxScaler, OrdinalEncoder

    frame, spec = training_frame(800, seed=7)
    pre = ColumnTransformer(
        [
            ("num", Pipeline([("i", SimpleImputer()), ("s", MinMaxScaler())]), spec.numeric),
            (
                "cat",
                Pipeline(
                    [
                        (
                            "i",
                            SimpleImputer(
                                missing_values=None, strategy="constant", fill_value="__missing__"
                            ),
                        ),
                        ("o", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)),
                    ]
                ),
                spec.categorical,
            ),
        ]
    )
    pipeline = Pipeline([("preprocess", pre), ("model", LogisticRegression(max_iter=500))])
    X = coerce_features(frame, spec)
    pipeline.fit(X, frame[spec.target])
    served = build_served_model(
        pipeline, spec, name="m", version="1", alias="champion", max_rows=100
    )
    assert isinstance(served.predictor, SklearnPredictor)
    assert served.predict_path == "sklearn"
    assert "MinMaxScaler" in served.fallback_reason
    batch = batch_from_frame(X.head(20), spec.numeric, spec.categorical)
    assert served.predictor.predict(batch).labels == pipeline.predict(X.head(20)).tolist()


def test_verification_rejects_a_wrong_predictor():
    frame, spec = training_frame(800, seed=8)
    pipeline = fit_pipeline(frame, spec, "lr")
    compiled = compile_pipeline(pipeline, spec.numeric, spec.categorical)
    batch = verification_batch(pipeline, spec.numeric, spec.categorical)
    expected = pipeline.predict_proba(batch.to_frame())
    # Probabilities off by up to 5e-4 with every label right (the map keeps each row's
    # order): only the probability check can catch it.
    exact = compiled.proba_fn
    compiled.proba_fn = lambda x: 0.999 * exact(x) + 0.0005
    error = float(np.max(np.abs(compiled.predict(batch).proba - expected)))
    assert PROBA_TOLERANCE < error < 5e-4
    assert verify_predictor(compiled, pipeline, batch) == (
        f"probabilities differ by {error:.3g} (> {PROBA_TOLERANCE})"
    )
    # A path that predicts one class everywhere: the first row whose label differs.
    compiled.proba_fn = lambda x: np.tile([0.9, 0.1], (x.shape[0], 1))
    labels = pipeline.predict(batch.to_frame()).tolist()
    first = next(i for i, label in enumerate(labels) if label != "no")
    assert verify_predictor(compiled, pipeline, batch) == (
        f"label mismatch at row {first}: 'no' != {labels[first]!r}"
    )


class _CountingSession:
    def __init__(self, session):
        self.session, self.rows = session, []

    def run(self, outputs, feeds):
        self.rows.append(len(feeds["X"]))
        return self.session.run(outputs, feeds)

    def get_session_options(self):
        return self.session.get_session_options()


def test_large_batches_use_the_multi_threaded_tree_session(monkeypatch):
    from include.ml_pipeline.serving.compiled import trees as trees_module
    from include.ml_pipeline.serving.compiled.trees import WIDE_BATCH_ROWS

    monkeypatch.setenv("MODEL_API_PREDICT_THREADS", "2")
    # graphs the leaf masks do not take (XGBoost's float32 ones, trees of 64+ leaves)
    monkeypatch.setattr(trees_module, "MASK_ROWS", 10**9)
    frame, spec = training_frame(1500, seed=8)
    pipeline = fit_pipeline(frame, spec, "hgb")
    compiled = compile_pipeline(pipeline, spec.numeric, spec.categorical)
    trees = compiled.proba_fn
    assert trees._wide.get_session_options().intra_op_num_threads == 2
    assert trees._session.get_session_options().intra_op_num_threads == 1
    trees._wide, trees._session = _CountingSession(trees._wide), _CountingSession(trees._session)
    batch = batch_from_frame(
        coerce_features(frame.head(WIDE_BATCH_ROWS), spec), spec.numeric, spec.categorical
    )
    # both sessions agree with the pipeline: the big batch goes wide, single rows narrow
    assert verify_predictor(compiled, pipeline, batch) is None
    assert trees._wide.rows == [WIDE_BATCH_ROWS]
    assert trees._session.rows
    assert set(trees._session.rows) == {1}
    # a pickled predictor (the server's copy) reopens both sessions from the environment
    monkeypatch.setenv("MODEL_API_PREDICT_THREADS", "1")
    restored = pickle.loads(pickle.dumps(compiled)).proba_fn
    assert restored._wide is restored._session


def test_predict_threads_setting(monkeypatch):
    from include.ml_pipeline.serving.compiled.trees import predict_threads

    monkeypatch.setenv("MODEL_API_PREDICT_THREADS", "3")
    assert predict_threads() == 3
    monkeypatch.delenv("MODEL_API_PREDICT_THREADS")
    assert 1 <= predict_threads() <= 2
    monkeypatch.setenv("MODEL_API_PREDICT_THREADS", "many")
    with pytest.raises(ValueError, match="MODEL_API_PREDICT_THREADS must be an integer"):
        predict_threads()


def test_categorical_pattern_table_is_bounded_and_exact(monkeypatch):
    import include.ml_pipeline.serving.compiled.predictor as predictor_module
    from include.ml_pipeline.serving.compiled.predictor import CategoricalBlock

    frame, spec = training_frame(1500, seed=12)
    pipeline = fit_pipeline(frame, spec, "lr")
    compiled = compile_pipeline(pipeline, spec.numeric, spec.categorical)
    block = next(b for b in compiled.blocks if isinstance(b, CategoricalBlock))
    batch = concat_batches(
        batch_from_frame(coerce_features(frame.head(200), spec), spec.numeric, spec.categorical),
        verification_batch(pipeline, spec.numeric, spec.categorical),
    )
    reference = np.zeros((batch.rows, block.width))
    block._encode([batch.categorical[p] for p in block.positions], reference, 0)
    # first batch fills the table, the second is served from it: same one-hot rows
    for _ in range(2):
        out = np.zeros((batch.rows, block.width))
        block.apply(batch, out, 0)
        np.testing.assert_array_equal(out, reference)
    distinct = len(set(zip(*[batch.categorical[p] for p in block.positions], strict=True)))
    assert len(block._pattern_ids) == distinct
    assert block._patterns.shape == (distinct, block.width)
    # a full table is not grown: unseen rows take the per-column path, still exact
    monkeypatch.setattr(predictor_module, "MAX_PATTERNS", distinct)
    unseen = Batch(
        batch.numeric_columns,
        batch.categorical_columns,
        batch.numeric,
        tuple(["never_seen"] * batch.rows for _ in batch.categorical),
    )
    expected = np.zeros((batch.rows, block.width))
    block._encode([unseen.categorical[p] for p in block.positions], expected, 0)
    out = np.zeros((batch.rows, block.width))
    block.apply(unseen, out, 0)
    np.testing.assert_array_equal(out, expected)
    assert len(block._pattern_ids) == distinct
    assert verify_predictor(compiled, pipeline, batch) is None


def test_a_micro_batch_is_encoded_value_by_value_to_the_same_floats(monkeypatch):
    """Up to `LOOP_ROWS` rows (8 connections' 1-row requests in one micro-batch) the
    categorical columns are encoded without numpy's per-array calls (~4.5 us a one-hot
    column): the same floats as the array path of the same rows."""
    import include.ml_pipeline.serving.compiled.predictor as predictor_module
    from include.ml_pipeline.serving.compiled.predictor import LOOP_ROWS, CategoricalBlock

    frame, spec = training_frame(1500, seed=12)
    pipeline = fit_pipeline(frame, spec, "lr")
    compiled = compile_pipeline(pipeline, spec.numeric, spec.categorical)
    one_hot = next(b for b in compiled.blocks if isinstance(b, CategoricalBlock))
    ordinal = CategoricalBlock(
        positions=one_hot.positions,
        fill=one_hot.fill,
        lookups=[{k: float(i) for i, k in enumerate(lookup)} for lookup in one_hot.lookups],
        widths=[1] * len(one_hot.positions),
        unknown=[-1] * len(one_hot.positions),
        ordinal=True,
    )
    batch = batch_from_frame(coerce_features(frame.head(64), spec), spec.numeric, spec.categorical)
    unseen = Batch(
        batch.numeric_columns,
        batch.categorical_columns,
        batch.numeric,
        tuple([None, "never_seen", *column[2:]] for column in batch.categorical),
    )
    for block in (one_hot, ordinal):
        for source in (batch, unseen):
            columns = [source.categorical[p] for p in block.positions]
            whole = np.zeros((source.rows, block.width))
            block._encode(columns, whole, 0)  # 64 rows: the array path
            for rows in (1, 2, LOOP_ROWS):
                with monkeypatch.context() as patched:
                    patched.setattr(predictor_module.np, "fromiter", _no_array_calls)
                    out = np.zeros((rows, block.width))
                    block._encode([c[:rows] for c in columns], out, 0)
                np.testing.assert_array_equal(out, whole[:rows])


def _no_array_calls(*args, **kwargs):
    raise AssertionError("a micro-batch's categorical column went through numpy's fromiter")
