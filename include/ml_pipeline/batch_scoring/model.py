"""The pinned model version, loaded once per part and scoring Arrow chunks.

Loading is the model API's: `fetch` downloads the version (the version the run pinned, not
whatever the alias names now), `compile_worker.load_pipeline` deserialises it and
`served.build_served_model` compiles the pipeline and verifies the compiled predictor
against it (labels equal, probabilities within 1e-6; a regressor's values within 1e-9
relative); what the compiler does not know is scored by the scikit-learn pipeline itself,
and `path` / `reason` say so. HistGradientBoosting, LightGBM and XGBoost trees are then
scored as leaf masks (`leaf_masks`) when they give the library's raw scores exactly; their
sums by numba-compiled code (`numba_trees`, loaded with the model) where numba loads,
checked the same way.

A classifier writes `prediction` (the label `pipeline.predict` gives) and one
`proba_<class>` column per class; a regressor writes `prediction`, the predicted value.

On the compiled path a chunk is never turned into Python rows: numeric columns go to one
float matrix, categorical columns are dictionary-encoded by Arrow and one-hot encoded with
the compiled encoder's own lookup tables (`columns.category_codes`), and the compiled
estimator runs on the matrix. That columnar encoding is checked at load against the
compiled predictor's own `transform` on its verification batch; on any difference the
version is scored on the scikit-learn path, never wrongly.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from include.ml_pipeline.batch_scoring.columns import (
    category_codes,
    numeric_matrix,
    numeric_values,
)
from include.ml_pipeline.features import FeatureSpec
from include.ml_pipeline.serving.compiled.leaf_masks import BLOCK_ROWS, LeafMasks, MaskInput
from include.ml_pipeline.serving.compiled.tree_sets import leaf_masks_of

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

log = logging.getLogger(__name__)

PREDICTION = "prediction"
PROBA_PREFIX = "proba_"
CLASSIFICATION = "classification"
#: Rows whose kernel inputs are built and scored at a time: the (rows x inputs) matrix
#: stays in the core's cache between being written and being read by the kernel.
INPUT_BLOCK_ROWS = 8_192
REGRESSION = "regression"
SKLEARN_PATH = "sklearn"


@dataclasses.dataclass
class BatchModel:
    """One model version as a batch scorer."""

    name: str
    version: str
    run_id: str | None
    spec: FeatureSpec
    pipeline: Any
    #: The classes of a classifier (in `predict_proba`'s column order), None for a regressor.
    classes: list[Any] | None
    #: The verified compiled predictor, or None on the scikit-learn path.
    predictor: Any = None
    #: `compiled:<estimator path>` or `sklearn`, and why not compiled.
    path: str = SKLEARN_PATH
    reason: str | None = None
    #: The trees as leaf masks read straight from the Arrow columns (`leaf_masks`), when
    #: the compiled estimator is a HistGradientBoosting one and they matched it at load.
    masks: MaskPlan | None = None
    #: What the leaf masks are checked against (`_mask_problem`): the compiled predictor's
    #: verification batch as an Arrow table and the library's raw scores on it, computed
    #: once from the pipeline and kept, so that a scorer without its pipeline (`portable`)
    #: can be rechecked on another worker.
    mask_check: tuple[pa.Table, np.ndarray] | None = None

    @property
    def problem(self) -> str:
        return CLASSIFICATION if self.classes is not None else REGRESSION

    @property
    def proba_columns(self) -> list[str]:
        return [f"{PROBA_PREFIX}{c}" for c in self.classes or []]

    def score(self, batch: pa.RecordBatch | pa.Table) -> dict[str, Any]:
        """`prediction` (+ `proba_<class>` columns) for every row of `batch`: numpy arrays,
        text labels of the compiled path as an Arrow dictionary array (the class texts
        once, an index per row)."""
        if batch.num_rows == 0:
            return self._empty()
        if self.masks is not None:
            proba = self.masks.trees.link(self.masks.raw(batch))
            if self.classes is None:
                return {PREDICTION: proba}
            return self._with_proba(self._labels(argmax(proba)), proba)
        if self.predictor is not None:
            proba = self.predictor.proba_fn(self.transform(batch))
            if self.classes is None:  # a regressor's compiled estimator gives its values
                return {PREDICTION: np.asarray(proba, dtype=np.float64).reshape(-1)}
            return self._with_proba(self._labels(argmax(proba)), proba)
        frame = self._frame(batch)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values = np.asarray(self.pipeline.predict(frame))
            if self.classes is None:
                return {PREDICTION: values.astype(np.float64)}
            return self._with_proba(values, self.pipeline.predict_proba(frame))

    def transform(self, batch: pa.RecordBatch | pa.Table) -> np.ndarray:
        """The compiled predictor's input matrix for `batch`, column by column."""
        from include.ml_pipeline.serving.batch import Batch
        from include.ml_pipeline.serving.compiled.predictor import NumericBlock

        numeric = list(self.spec.numeric)
        out = np.zeros((batch.num_rows, self.predictor.width), dtype=np.float64)
        holder = Batch(tuple(numeric), (), numeric_matrix(batch, numeric), ())
        offset = 0
        for block in self.predictor.blocks:
            if isinstance(block, NumericBlock):
                block.apply(holder, out, offset)
            elif block.ordinal:
                self._codes(block, batch, out, offset)
            else:
                self._one_hot(block, batch, out, offset)
            offset += block.width
        return out

    def _codes(self, block: Any, batch: Any, out: np.ndarray, offset: int) -> None:
        """An ordinal block (`CategoricalBlock.ordinal`): each column its category's code."""
        for j, (position, lookup, unknown) in enumerate(
            zip(block.positions, block.lookups, block.unknown, strict=True)
        ):
            codes, texts = category_codes(batch.column(self.spec.categorical[position]))
            values = [lookup.get(text, unknown) for text in texts] + [lookup.get(None, unknown)]
            out[:, offset + j] = np.asarray(values, dtype=np.float64)[codes]

    def _one_hot(self, block: Any, batch: Any, out: np.ndarray, offset: int) -> None:
        for position, lookup, width, unknown in zip(
            block.positions, block.lookups, block.widths, block.unknown, strict=True
        ):
            codes, texts = category_codes(batch.column(self.spec.categorical[position]))
            # one output column per distinct text, the last entry for missing values
            columns = [lookup.get(text, unknown) for text in texts] + [lookup.get(None, unknown)]
            index = np.asarray(columns, dtype=np.intp)[codes]
            hit = index >= 0
            out[np.flatnonzero(hit), offset + index[hit]] = 1.0
            offset += width

    def _labels(self, index: np.ndarray) -> Any:
        import pyarrow as pa

        classes = self.classes or []
        if all(isinstance(c, str) for c in classes):
            return pa.DictionaryArray.from_arrays(
                pa.array(index.astype(np.int32)), pa.array(classes, pa.string())
            )
        return np.asarray(classes)[index]

    def _frame(self, batch: Any) -> Any:
        from include.ml_pipeline.features import coerce_features

        return coerce_features(batch.select(self.spec.columns).to_pandas(), self.spec)

    def _with_proba(self, labels: Any, proba: np.ndarray) -> dict[str, Any]:
        out = {PREDICTION: labels}
        for j, name in enumerate(self.proba_columns):
            out[name] = np.ascontiguousarray(proba[:, j], dtype=np.float64)
        return out

    def _empty(self) -> dict[str, np.ndarray]:
        kind = np.float64 if self.classes is None else np.asarray(self.classes).dtype
        return {PREDICTION: np.empty(0, dtype=kind)} | {
            name: np.empty(0, dtype=np.float64) for name in self.proba_columns
        }


def argmax(proba: np.ndarray) -> np.ndarray:
    """`proba.argmax(axis=1)` (the first largest column of each row, a NaN counting as the
    largest), for two columns by comparisons: numpy's row-wise argmax over two columns
    cost 0.011 us per row, these 0.003."""
    if proba.ndim != 2 or proba.shape[1] != 2:
        return proba.argmax(axis=1)
    first, second = proba[:, 0], proba[:, 1]
    # the second column wins where it is larger, or where it is NaN and the first is not
    wins = np.greater(second, first)
    nan = np.isnan(second)
    if nan.any():
        wins |= nan & ~np.isnan(first)
    return wins.view(np.int8)


@functools.cache
def _pool(threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(threads, thread_name_prefix="batch-scoring")


@dataclasses.dataclass
class MaskPlan:
    """The compiled predictor's preprocessing and trees as leaf-mask tables: numeric
    columns imputed and scaled by its `NumericBlock`s then binned, categorical columns
    mapped from their Arrow dictionary to the row of their one-hot pattern (the one-hot
    matrix is never built), tables merged (`LeafMasks.merge`)."""

    trees: LeafMasks
    numeric: list[str]
    #: per input: ("numeric", block, column within it, matrix column) or
    #: ("categorical", column name, lookup, unknown output column, width)
    inputs: list[tuple[Any, ...]]
    tables: list[np.ndarray]
    members: list[list[int]]
    strides: list[list[int]]
    #: the same sums by numba-compiled code (`numba_trees`), when its kernels loaded
    compiled: Any = None

    def raw(self, batch: pa.RecordBatch | pa.Table) -> np.ndarray:
        """The raw scores of `batch`'s rows: its halves side by side on
        `predict_threads()` threads (Arrow and numpy release the GIL)."""
        from include.ml_pipeline.serving.compiled.trees import predict_threads

        threads = predict_threads()
        if threads <= 1 or batch.num_rows < 2 * BLOCK_ROWS:
            return self._raw(batch)
        size = -(-batch.num_rows // threads)
        slices = [batch.slice(start, size) for start in range(0, batch.num_rows, size)]
        return np.concatenate(list(_pool(threads).map(self._raw, slices)))

    def _raw(self, batch: pa.RecordBatch | pa.Table) -> np.ndarray:
        from include.ml_pipeline.serving.batch import Batch

        rows = batch.num_rows
        if self.compiled is not None and self.inputs:
            from include.ml_pipeline.serving.compiled.numba_trees import MATRIX, ready

            kernels = ready(MATRIX, *self.compiled.dtypes)
            if kernels is not None:
                columns = self._columns(batch)
                if rows <= INPUT_BLOCK_ROWS:
                    return self.compiled(kernels, self._inputs(columns, 0, rows))
                return np.concatenate(
                    [
                        self.compiled(
                            kernels,
                            self._inputs(columns, start, min(rows, start + INPUT_BLOCK_ROWS)),
                        )
                        for start in range(0, rows, INPUT_BLOCK_ROWS)
                    ]
                )
        holder = Batch(tuple(self.numeric), (), numeric_matrix(batch, self.numeric), ())
        scaled: dict[int, np.ndarray] = {}
        bins: list[np.ndarray] = []
        for source in self.inputs:
            if source[0] == "numeric":
                _, block, j, column = source
                if id(block) not in scaled:
                    scaled[id(block)] = np.empty((rows, block.width), dtype=np.float64)
                    block.apply(holder, scaled[id(block)], 0)
                bins.append(self.trees.column_bins(column, scaled[id(block)][:, j]))
            else:
                _, name, lookup, unknown, width = source
                codes, texts = category_codes(batch.column(name))
                bins.append(_slots(lookup, unknown, width, texts, np.intp)[codes])
        indexes = []
        for members, strides in zip(self.members, self.strides, strict=True):
            index = bins[members[0]] * strides[0] if strides[0] != 1 else bins[members[0]]
            for member, stride in zip(members[1:], strides[1:], strict=True):
                index = index + bins[member] * stride if stride != 1 else index + bins[member]
            indexes.append(index)
        if not indexes:  # no split at all: every tree is one leaf
            indexes = [np.zeros(rows, dtype=np.intp)]
            tables = [np.full((1, self.trees.n_trees), self.trees.full, self.trees.dtype)]
            return self.trees.raw(tables, indexes)
        return self.trees.raw(self.tables, indexes)

    def _columns(self, batch: pa.RecordBatch | pa.Table) -> list[np.ndarray]:
        """Per kernel input, its column of `batch` read once for all its blocks: a numeric
        input's raw floats (NaN for missing; Arrow's buffer where it is one), a categorical
        input's one-hot slot per row (its dictionary's texts looked up once, gathered by
        the column's codes)."""
        found: list[np.ndarray] = []
        for source in self.inputs:
            if source[0] == "numeric":
                _, block, j, _ = source
                found.append(numeric_values(batch.column(self.numeric[block.positions[j]])))
            else:
                _, name, lookup, unknown, width = source
                codes, texts = category_codes(batch.column(name))
                found.append(np.take(_slots(lookup, unknown, width, texts, np.float64), codes))
        return found

    def _inputs(self, columns: list[np.ndarray], start: int, stop: int) -> np.ndarray:
        """The compiled kernel's input matrix (rows `start:stop` x inputs) from `_columns`:
        each numeric input imputed and scaled by its `NumericBlock.apply_column` (the same
        operations as `apply`, so the same floats) into its matrix column; each
        categorical input its one-hot slot. The matrix is this thread's buffer, reused
        block after block (a fresh one per block paid the allocator's page faults): the
        kernel reads it before the next block comes."""
        values = _buffer(stop - start, len(self.inputs))
        for i, (source, found) in enumerate(zip(self.inputs, columns, strict=True)):
            if source[0] == "numeric":
                _, block, j, _ = source
                # the passes on the contiguous column, one strided write into the matrix
                block.apply_column(j, found[start:stop], values[:, i])
            else:
                values[:, i] = found[start:stop]
        return values


def _slots(
    lookup: dict[Any, int], unknown: int, width: int, texts: list[Any], dtype: Any
) -> np.ndarray:
    """Per dictionary text (then one for a missing value) the row of its one-hot pattern in
    a mask table: its output column, `width` (the all-zeros row) for none."""
    slots = np.asarray(
        [lookup.get(t, unknown) for t in texts] + [lookup.get(None, unknown)], dtype=dtype
    )
    slots[slots < 0] = width
    return slots


_buffers = threading.local()


def _buffer(rows: int, width: int) -> np.ndarray:
    """This thread's (rows x width) float64 matrix: the same memory at every call of the
    same shape, a new one when the shape changes."""
    held = getattr(_buffers, "matrix", None)
    if held is None or held.shape != (rows, width):
        held = _buffers.matrix = np.empty((rows, width), dtype=np.float64)
    return held


def mask_plan(predictor: Any, estimator: Any, spec: FeatureSpec) -> MaskPlan:
    """The leaf-mask plan of a compiled predictor whose estimator is `estimator` (raises
    `UnsupportedPipeline` for trees `LeafMasks` does not take)."""
    from include.ml_pipeline.serving.compiled.predictor import NumericBlock

    trees = leaf_masks_of(estimator)
    inputs: list[tuple[Any, ...]] = []
    masks: list[MaskInput] = []
    offset = 0
    for block in predictor.blocks:
        if isinstance(block, NumericBlock):
            for j in range(block.width):
                if offset + j in trees.columns:
                    inputs.append(("numeric", block, j, offset + j))
                    masks.append(MaskInput(trees.columns[offset + j][1], f"column {offset + j}"))
            offset += block.width
            continue
        if block.ordinal:  # a table row per code (the lookup's), the last for unseen ones
            for j, (position, lookup, unknown) in enumerate(
                zip(block.positions, block.lookups, block.unknown, strict=True)
            ):
                if offset + j in trees.columns:
                    known = max(lookup.values()) + 1
                    codes = np.append(np.arange(known, dtype=np.float64), float(unknown))
                    name = spec.categorical[position]
                    inputs.append(("categorical", name, lookup, -1, known))
                    masks.append(MaskInput(trees.column_masks(offset + j, codes), name))
            offset += block.width
            continue
        for position, lookup, width, unknown in zip(
            block.positions, block.lookups, block.widths, block.unknown, strict=True
        ):
            columns = range(offset, offset + width)
            if any(c in trees.columns for c in columns):
                # row s < width: the one-hot pattern of output column s; row width: zeros
                patterns = np.vstack([np.eye(width), np.zeros((1, width))])
                table: np.ndarray[Any, Any] = np.full(
                    (width + 1, trees.n_trees), trees.full, dtype=trees.dtype
                )
                for j, column in enumerate(columns):
                    table &= trees.column_masks(column, patterns[:, j])
                name = spec.categorical[position]
                inputs.append(("categorical", name, lookup, unknown, width))
                masks.append(MaskInput(table, name))
            offset += width
    merged = trees.merge(masks)
    return MaskPlan(
        trees=trees,
        numeric=list(spec.numeric),
        inputs=inputs,
        tables=[table for table, _, _ in merged],
        members=[members for _, members, _ in merged],
        strides=[strides for _, _, strides in merged],
    )


def _verification_table(model: BatchModel) -> tuple[pa.Table, Any]:
    """The compiled predictor's verification batch (every category, unseen ones and
    missing values) as an Arrow table, and as the `Batch` itself."""
    import pyarrow as pa

    from include.ml_pipeline.serving.compiled.verify import verification_batch

    spec = model.spec
    sample = verification_batch(model.pipeline, list(spec.numeric), list(spec.categorical))
    arrays = {name: sample.numeric[:, j] for j, name in enumerate(spec.numeric)}
    arrays |= {
        name: pa.array(values, type=pa.string())
        for name, values in zip(spec.categorical, sample.categorical, strict=True)
    }
    return pa.table(arrays), sample


def _mask_reference(model: BatchModel) -> tuple[pa.Table, np.ndarray]:
    """The verification batch as an Arrow table and the library's raw scores on it (the
    pipeline's estimator, on the compiled predictor's `transform`): `model.mask_check`,
    computed from the pipeline at the first call."""
    from include.ml_pipeline.serving.compiled.tree_sets import library_raw

    if model.mask_check is None:
        table, sample = _verification_table(model)
        expected = library_raw(model.pipeline[-1], model.predictor.transform(sample))
        model.mask_check = (table, expected)
    return model.mask_check


def _mask_problem(model: BatchModel) -> str | None:
    """None when the leaf masks give the same raw scores (the same floats) as the
    estimator's own library on the verification batch, else why not."""
    table, expected = _mask_reference(model)
    assert model.masks is not None  # only asked of a model that has leaf masks
    got = model.masks.raw(table)
    if got.shape != expected.shape or not np.array_equal(got, expected):
        return "the leaf masks' raw scores differ from the library's on the verification batch"
    return None


def _columnar_problem(model: BatchModel) -> str | None:
    """None when the columnar encoding equals the compiled predictor's `transform` on its
    verification batch (every category, unseen ones and missing values), else why not."""
    table, sample = _verification_table(model)
    expected = model.predictor.transform(sample)
    got = model.transform(table)
    if got.shape != expected.shape or not np.array_equal(got, expected, equal_nan=True):
        return "the columnar encoding differs from the compiled predictor's on its sample"
    return None


def load_batch_model(tracking_uri: str, name: str, version: str) -> BatchModel:
    """Version `version` of registered model `name`, compiled and verified as the model API
    serves it, else on the scikit-learn path (the reason logged and kept)."""
    import pandas as pd

    from include.ml_pipeline.names import CHAMPION
    from include.ml_pipeline.serving.loading.compile_worker import load_pipeline
    from include.ml_pipeline.serving.loading.fetch import fetch

    os.environ.setdefault("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    info = fetch(tracking_uri, name, CHAMPION, pinned=str(version))
    example = info.get("example")
    return batch_model(
        load_pipeline(info),
        FeatureSpec.from_dict(info["spec"]),
        name=name,
        version=str(info["version"]),
        run_id=info.get("run_id"),
        example=pd.DataFrame(example["data"], columns=example["columns"]) if example else None,
    )


def batch_model(
    pipeline: Any,
    spec: FeatureSpec,
    *,
    name: str,
    version: str,
    run_id: str | None = None,
    example: Any = None,
) -> BatchModel:
    """A fitted pipeline as a batch scorer: compiled and verified as the model API serves
    it (classifiers and regressors alike), its trees as leaf masks where they give the
    library's raw scores exactly, else on the scikit-learn path (the reason kept)."""
    from include.ml_pipeline.names import CHAMPION
    from include.ml_pipeline.serving.compiled.predictor import CompiledPredictor
    from include.ml_pipeline.serving.loading.served import build_served_model

    model = BatchModel(
        name=name, version=version, run_id=run_id, spec=spec, pipeline=pipeline, classes=None
    )
    if hasattr(pipeline, "predict_proba"):
        model.classes = list(np.asarray(pipeline.classes_).tolist())
    served = build_served_model(
        pipeline,
        spec,
        name=name,
        version=version,
        alias=CHAMPION,
        max_rows=1,
        run_id=run_id,
        example=example,
    )
    if not isinstance(served.predictor, CompiledPredictor):
        model.reason = served.fallback_reason
        return model
    model.predictor, model.path = served.predictor, served.predict_path
    problem = _columnar_problem(model)
    if problem is not None:
        model.predictor, model.path, model.reason = None, SKLEARN_PATH, problem
        log.warning("%s v%s on the scikit-learn path: %s", name, version, problem)
        return model
    _use_leaf_masks(model)
    return model


def _use_leaf_masks(model: BatchModel) -> None:
    """Score a HistGradientBoosting, LightGBM or XGBoost version by its leaf masks when
    they give the library's raw scores exactly; else (other estimators, or any
    difference) keep the compiled predictor."""
    from include.ml_pipeline.serving.compiled.predictor import UnsupportedPipeline

    if not any(tag in model.path for tag in ("hgb", "lightgbm", "xgboost")):
        return
    try:
        model.masks = mask_plan(model.predictor, model.pipeline[-1], model.spec)
    except UnsupportedPipeline as exc:
        log.info("%s v%s: no leaf masks (%s)", model.name, model.version, exc)
        return
    suffix = "+leaf-masks"
    if model.masks.tables and _use_compiled_sums(model.masks):
        suffix = "+leaf-masks-numba"
        problem = _mask_problem(model)
        if problem is not None:  # numpy's sums are then checked on their own
            log.warning("%s v%s: compiled leaf masks: %s", model.name, model.version, problem)
            model.masks.compiled, suffix = None, "+leaf-masks"
    problem = _mask_problem(model) if suffix == "+leaf-masks" else None
    if problem is not None:
        model.masks = None
        log.warning("%s v%s: no leaf masks: %s", model.name, model.version, problem)
        return
    model.path = f"{model.path}{suffix}"


def _use_compiled_sums(plan: MaskPlan) -> bool:
    """Give `plan` the numba-compiled sums (`numba_trees`: loaded here, at load time, not
    while scoring); False where numba is missing or fails (numpy sums then)."""
    from include.ml_pipeline.serving.compiled.numba_trees import MATRIX, InputSums, warm_up

    if plan.trees.zero_as_missing or not plan.inputs:
        return False
    if warm_up(MATRIX, plan.trees.dtype, plan.trees.sum_dtype) is None:
        return False
    thresholds = []
    for source in plan.inputs:
        if source[0] == "numeric":
            thresholds.append(plan.trees.columns[source[3]][0])
        else:  # slot s (of width + 1) is bin s
            thresholds.append(np.arange(source[4], dtype=np.float64) + 0.5)
    plan.compiled = InputSums(plan, thresholds)
    return True


def portable(model: BatchModel) -> BatchModel:
    """`model` as another worker needs it (`shared.publish`): on a compiled path, without
    the scikit-learn pipeline (the verified compiled predictor and leaf masks score
    without it, and the masks' recheck uses the kept `mask_check`), so that unpickling it
    never imports scikit-learn; on the scikit-learn path, `model` itself."""
    if model.predictor is None:
        return model
    if model.masks is not None:
        _mask_reference(model)
    return dataclasses.replace(model, pipeline=None)


def recheck_on_this_worker(model: BatchModel) -> None:
    """What a scorer verified in another process (`shared.publish`) redoes here: the
    numba kernels are loaded on this worker (numpy's sums where they do not load) and the
    leaf masks' raw scores checked again against the library's on the verification batch
    (milliseconds), since the kernels are compiled per worker. On a difference the masks
    are dropped and the verified compiled predictor scores; the rest of the verification
    (compiled predictor and columnar encoding against the pipeline) depends only on the
    pickled objects and is not repeated."""
    from include.ml_pipeline.serving.compiled.numba_trees import MATRIX, warm_up

    masks = model.masks
    if masks is None:
        return
    base = model.path.split("+leaf-masks")[0]
    if masks.compiled is not None and warm_up(MATRIX, *masks.compiled.dtypes) is None:
        masks.compiled = None
    for _ in range(2):
        problem = _mask_problem(model)
        if problem is None:
            model.path = f"{base}+leaf-masks" + ("-numba" if masks.compiled is not None else "")
            return
        log.warning("%s v%s on this worker: %s", model.name, model.version, problem)
        if masks.compiled is None:
            break
        masks.compiled = None  # numpy's sums, checked on their own
    model.masks, model.path = None, base
