"""`numba_trees`: leaf masks summed by numba-compiled code give the library's own raw
scores, the same floats as the numpy masks, for a binary HistGradientBoosting, a
multiclass LightGBM and an XGBoost regressor (float32 sums), and LightGBM and XGBoost
with native categorical splits (binned by their code in the kernel), with missing values and a
partial last block (batch scoring's form: `tests/batch_scoring/test_fast_paths.py`); a
numba cache folder that cannot be written is never a failure."""

from __future__ import annotations

import numpy as np
import pytest

from include.ml_pipeline.serving.compiled import numba_trees
from include.ml_pipeline.serving.compiled.tree_sets import library_raw


@pytest.fixture(autouse=True)
def _one_thread():
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


def _data(rows: int, seed: int):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 6))
    x[:, 4] = rng.integers(0, 4, rows)
    x[:, 5] = rng.integers(0, 2, rows)
    x[rng.random(x.shape) < 0.05] = np.nan
    signal = np.nan_to_num(x[:, 0]) + 0.5 * np.nan_to_num(x[:, 1]) * np.nan_to_num(x[:, 4])
    return x, signal


def _fit(library: str, problem: str):
    x, signal = _data(3_000, 0)
    y = (
        signal
        if problem == "regression"
        else np.digitize(signal, [0] if problem == "binary" else [-1, 0, 1])
    )
    if library == "hgb":
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(x, y)
    if library == "lightgbm":
        import lightgbm

        return lightgbm.LGBMClassifier(n_estimators=10, n_jobs=1, verbose=-1).fit(x, y)
    if library == "lightgbm-categorical":  # columns 4 and 5 split as categories
        import lightgbm

        return lightgbm.LGBMClassifier(
            n_estimators=10, n_jobs=1, verbose=-1, min_data_per_group=5, cat_smooth=1
        ).fit(x, y, categorical_feature=[4, 5])
    import xgboost

    if library == "xgboost-categorical":
        return xgboost.XGBClassifier(
            n_estimators=15,
            max_depth=6,
            n_jobs=1,
            feature_types=["q"] * 4 + ["c"] * 2,
            enable_categorical=True,
            max_cat_to_onehot=1,
        ).fit(x, y)
    return xgboost.XGBRegressor(n_estimators=15, max_depth=6, n_jobs=1).fit(x, y)


def _onnx_trees(est, library: str):
    from include.ml_pipeline.serving.compiled.boosters import compile_booster
    from include.ml_pipeline.serving.compiled.onnx_graph import hgb_tree_arrays, tree_ensemble_model
    from include.ml_pipeline.serving.compiled.trees import HGBTrees, OnnxTrees

    if library != "hgb":
        return compile_booster(est)[1]  # its own library, whatever the variant
    hgb = HGBTrees(est)
    graph = tree_ensemble_model([hgb_tree_arrays(k, p) for k, p in hgb.predictors], hgb.k, 6)
    return OnnxTrees(graph, hgb.k, hgb.baseline, hgb.regression)


@pytest.mark.parametrize(
    ("library", "problem"),
    [
        ("hgb", "binary"),
        ("lightgbm", "multiclass"),
        ("xgboost", "regression"),
        ("lightgbm-categorical", "binary"),
        ("xgboost-categorical", "multiclass"),
    ],
)
def test_compiled_sums_are_the_librarys_raw_scores(library, problem):
    est = _fit(library, problem)
    if library.endswith("categorical"):  # native categorical splits, read from the dump
        masks = _onnx_trees(est, library).masks()
        assert masks is not None
        assert masks.trees.categorical
    fresh, _ = _data(1_000 + 37, 1)  # 16 full blocks of 64 rows and a partial one
    expected = library_raw(est, fresh)

    # the model API's path: bins found in the kernel, checked against numpy at first use
    masked = _onnx_trees(est, library).masks()  # starts loading the kernel: wait for it
    assert masked is not None
    kernels = numba_trees.warm_up(numba_trees.MATRIX, *masked.dtypes)
    assert kernels is not None, numba_trees.failure()
    assert np.array_equal(masked(fresh), expected)
    assert masked.compiled
    assert np.array_equal(masked(fresh[:5]), expected[:5])


def test_an_unwritable_cache_folder_falls_back_to_a_fresh_one(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")  # mkdir under a file fails, even as root
    monkeypatch.setenv(numba_trees.CACHE_ENV, str(blocker / "cache"))
    folder = numba_trees.cache_dir()
    assert folder is not None
    assert folder != blocker / "cache"
    assert folder.is_dir()
    monkeypatch.setenv(numba_trees.CACHE_ENV, str(tmp_path / "fine"))
    assert numba_trees.cache_dir() == tmp_path / "fine"


def test_a_warm_up_freezes_what_numba_made(monkeypatch):
    """numba's import and compilation make ~80,000 long-lived objects after the model's
    load froze the others (`state.py`): the warm-up freezes them too, so that the first
    collections during traffic do not traverse them (5-12 ms pauses of the event loop)."""
    import gc

    est = _fit("hgb", "binary")
    masked = _onnx_trees(est, "hgb").masks()
    assert masked is not None
    key = numba_trees._key(numba_trees.MATRIX, *masked.dtypes)
    monkeypatch.setitem(numba_trees._state, "warm", set(numba_trees._state["warm"]) - {key})
    gc.freeze()  # as the model API does after a load (`state.py`)
    made_before = [[]]  # a container the collector tracks, made before the warm-up
    assert gc.is_tracked(made_before)
    frozen = gc.get_freeze_count()
    assert numba_trees.warm_up(numba_trees.MATRIX, *masked.dtypes) is not None
    assert gc.get_freeze_count() > frozen
    assert not any(obj is made_before for obj in gc.get_objects())  # frozen: not listed


@pytest.mark.parametrize(
    ("library", "problem", "takes_masks"),
    [
        ("xgboost", "regression", True),
        ("xgboost-categorical", "multiclass", True),
        ("lightgbm", "multiclass", True),
        ("lightgbm-categorical", "binary", True),
        ("hgb", "binary", False),  # its baseline: added first by the masks, last by onnx
    ],
)
def test_small_batches_take_the_masks_only_where_they_are_onnxruntimes_floats(
    library, problem, takes_masks, monkeypatch
):
    from include.ml_pipeline.serving.compiled.trees import MASK_ROWS

    est = _fit(library, problem)
    trees = _onnx_trees(est, library)
    on_onnx = _onnx_trees(est, library)
    on_onnx._small_masks_apply = False  # what every batch under MASK_ROWS rows ran on before
    fresh, _ = _data(MASK_ROWS * 40, 2)  # missing values, category codes, unseen extremes
    fresh[:7, :4] = np.array([1e300, -1e300, 3.3e38, 1e30, 0.0, -0.0, np.nan])[:, None]
    assert trees.small_masks(fresh[:1]) is None  # the masks are not built by a small batch
    masks = trees.masks()
    assert masks is not None
    assert numba_trees.warm_up(numba_trees.MATRIX, *masks.dtypes) is not None
    with monkeypatch.context() as patched:  # the kernel not loaded yet: onnxruntime
        patched.setattr(numba_trees, "ready", lambda *a: None)
        assert trees.small_masks(fresh[:1]) is None
    # the kernel's first check is on 64 rows: under that numpy's float32 sums are pairwise
    assert (trees.small_masks(fresh[:1]) is masks) is takes_masks
    start = 0
    for rows in (1, 2, 7, 8, 16, 33, MASK_ROWS - 1) * 8:
        x = fresh[start : start + rows]
        start += rows
        assert np.array_equal(trees(x), on_onnx(x)), (rows, start)
    assert masks.compiled is takes_masks  # the kernel answered them (checked at first use)
