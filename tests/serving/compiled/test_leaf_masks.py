"""`leaf_masks`: HistGradientBoosting trees scored from leaf-mask tables give the raw
scores of scikit-learn's own predictors, the same floats, for binary, multiclass and
regression models, with missing values, wide trees (64-bit masks) and merged tables."""

from __future__ import annotations

import numpy as np
import pytest

from include.ml_pipeline.serving.compiled import leaf_masks
from include.ml_pipeline.serving.compiled.leaf_masks import LeafMasks, MaskInput
from include.ml_pipeline.serving.compiled.predictor import UnsupportedPipeline
from include.ml_pipeline.serving.compiled.tree_sets import leaf_masks_of


@pytest.fixture(autouse=True)
def _one_thread():
    """OpenMP barriers crawl on a busy 2-core box: fit and predict on one thread."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


def _data(rows: int = 3_000, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 6))
    x[:, 4] = rng.integers(0, 4, rows)  # a few distinct values: a small table
    x[:, 5] = rng.integers(0, 2, rows)  # one-hot like
    x[rng.random(x.shape) < 0.05] = np.nan
    signal = np.nan_to_num(x[:, 0]) + 0.5 * np.nan_to_num(x[:, 1]) * np.nan_to_num(x[:, 4])
    return x, signal


def _raw(trees: LeafMasks, x: np.ndarray) -> np.ndarray:
    used = sorted(trees.columns)
    inputs = [MaskInput(trees.columns[c][1], str(c)) for c in used]
    bins = [trees.column_bins(c, x[:, c]) for c in used]
    tables, indexes = [], []
    for table, members, strides in trees.merge(inputs):
        tables.append(table)
        indexes.append(sum(bins[m] * s for m, s in zip(members, strides, strict=True)))
    return trees.raw(tables, indexes)


@pytest.mark.parametrize(
    ("problem", "leaves"), [("binary", 31), ("multiclass", 31), ("binary", 48), ("regression", 31)]
)
def test_leaf_masks_give_the_trees_raw_scores_exactly(problem, leaves, monkeypatch):
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    x, signal = _data()
    if problem == "regression":
        est = HistGradientBoostingRegressor(max_iter=30, max_leaf_nodes=leaves, random_state=0)
        est.fit(x, signal)
    else:
        y = (signal > 0).astype(int) if problem == "binary" else np.digitize(signal, [-1, 0, 1])
        est = HistGradientBoostingClassifier(max_iter=30, max_leaf_nodes=leaves, random_state=0)
        est.fit(x, y)
    monkeypatch.setattr(leaf_masks, "BLOCK_ROWS", 700)  # several blocks, a partial last one
    trees = leaf_masks_of(est)
    assert trees.dtype == (np.uint64 if leaves > 32 else np.uint32)
    fresh, _ = _data(2_500, seed=1)
    raw = _raw(trees, fresh)
    expected = est._raw_predict(fresh)
    assert np.array_equal(raw, expected)  # the same floats, not merely close
    if problem == "regression":
        assert np.array_equal(trees.link(raw), est.predict(fresh))
    else:
        np.testing.assert_allclose(trees.link(raw), est.predict_proba(fresh), rtol=0, atol=1e-12)


def test_small_tables_are_merged_and_wide_trees_refused():
    from sklearn.ensemble import HistGradientBoostingClassifier

    x, signal = _data()
    est = HistGradientBoostingClassifier(max_iter=10, random_state=0).fit(x, signal > 0)
    trees = leaf_masks_of(est)
    inputs = [MaskInput(trees.columns[c][1], str(c)) for c in sorted(trees.columns)]
    merged = trees.merge(inputs)
    assert len(merged) < len(inputs)  # the small features share a table
    assert all(len(table) <= leaf_masks.TABLE_ROWS for table, _, _ in merged)
    wide = HistGradientBoostingClassifier(max_iter=3, max_leaf_nodes=80, min_samples_leaf=2)
    with pytest.raises(UnsupportedPipeline, match="leaves"):
        leaf_masks_of(wide.fit(x, signal > 0))


def test_merged_tables_stay_under_the_byte_cap(monkeypatch):
    """`TABLE_BYTES` bounds a merged table as `TABLE_ROWS` does (wide 64-bit words made
    tables that missed the cache): fewer merges, the same raw scores."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    x, signal = _data()
    est = HistGradientBoostingClassifier(max_iter=10, random_state=0).fit(x, signal > 0)
    trees = leaf_masks_of(est)
    inputs = [MaskInput(trees.columns[c][1], str(c)) for c in sorted(trees.columns)]
    uncapped = trees.merge(inputs)
    cap = max(table.nbytes for table, _, _ in uncapped) - 1
    monkeypatch.setattr(leaf_masks, "TABLE_BYTES", cap)
    capped = trees.merge(inputs)
    assert len(capped) > len(uncapped)
    assert all(table.nbytes <= cap or len(members) == 1 for table, members, _ in capped)

    def raw(merged):
        bins = [trees.column_bins(c, x[:, c]) for c in sorted(trees.columns)]
        indexes = [
            sum(bins[m] * s for m, s in zip(members, strides, strict=True))
            for _, members, strides in merged
        ]
        return trees.raw([table for table, _, _ in merged], indexes)

    assert raw(capped).tobytes() == raw(uncapped).tobytes()


@pytest.mark.parametrize("library", ["lightgbm", "xgboost"])
@pytest.mark.parametrize("problem", ["binary", "multiclass", "regression"])
def test_boosters_leaf_masks_give_the_librarys_raw_scores_exactly(library, problem):
    """LightGBM (`x <= t` in float64, NaN and zero-as-missing) and XGBoost (`x < t` on
    float32 inputs, leaves summed in float32 from the base margin, tree after tree)."""
    from include.ml_pipeline.serving.compiled.tree_sets import library_raw

    x, signal = _data()
    x[::7, 5] = 0.0  # exact zeros: LightGBM's zero_as_missing reads them as missing
    if problem == "regression":
        y = signal
    else:
        y = (signal > 0).astype(int) if problem == "binary" else np.digitize(signal, [-1, 0, 1])
    if library == "lightgbm":
        import lightgbm

        kind = lightgbm.LGBMRegressor if problem == "regression" else lightgbm.LGBMClassifier
        est = kind(n_estimators=15, num_leaves=31, zero_as_missing=True, n_jobs=1, verbose=-1).fit(
            x, y
        )
    else:
        import xgboost

        kind = xgboost.XGBRegressor if problem == "regression" else xgboost.XGBClassifier
        est = kind(n_estimators=15, max_depth=6, n_jobs=1).fit(x, y)
    trees = leaf_masks_of(est)
    assert trees.library == library
    fresh, _ = _data(2_500, seed=1)
    fresh[::5, 5] = 0.0
    raw = _raw(trees, fresh)
    assert np.array_equal(raw, library_raw(est, fresh))  # the same floats, not merely close
    if problem == "regression":
        assert np.array_equal(trees.link(raw), est.predict(fresh).astype(np.float64))
    else:
        assert np.array_equal(trees.link(raw).argmax(axis=1), est.predict(fresh))
        np.testing.assert_allclose(trees.link(raw), est.predict_proba(fresh), rtol=0, atol=1e-6)


def test_block_buffers_are_kept_for_the_next_calls_and_never_shared():
    """A call reuses the buffers a previous call left (no fresh arrays, no page faults per
    request), concurrent calls each take their own, and a pickle carries none."""
    import pickle
    from concurrent.futures import ThreadPoolExecutor

    from sklearn.ensemble import HistGradientBoostingRegressor

    x, signal = _data()
    est = HistGradientBoostingRegressor(max_iter=10, random_state=0).fit(x, signal)
    trees = leaf_masks_of(est)
    fresh, _ = _data(1_000, seed=2)
    expected = est._raw_predict(fresh)
    assert np.array_equal(_raw(trees, fresh), expected)
    kept = list(trees._pool)
    assert len(kept) == 1
    assert np.array_equal(_raw(trees, fresh[:300]), expected[:300])  # fewer rows, same buffers
    assert trees._pool[0] is kept[0]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda i: _raw(trees, fresh[i * 100 :]), range(8)))
    for i, raw in enumerate(got):
        assert np.array_equal(raw, expected[i * 100 :])
    assert 1 <= len(trees._pool) <= leaf_masks.POOLED_BUFFERS
    restored = pickle.loads(pickle.dumps(trees))
    assert "_pool" not in restored.__dict__
    assert np.array_equal(_raw(restored, fresh), expected)
