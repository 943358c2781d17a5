"""Large batches of HistGradientBoosting, LightGBM and XGBoost trees as leaf masks summed
by numba-compiled code (`numba_kernels.py`): the same tables and the same floats as
`leaf_masks.LeafMasks.raw` (numpy), in one pass per block of 64 rows instead of one numpy
pass per step over the whole chunk.

Why leaf masks and not a walk over flat node arrays (measured 2026-12-04, numba 0.68.1,
this 2-core machine under load 13-20, process CPU, medians of alternated runs; the
benchmark's HistGradientBoosting classifier, 63 trees, and `hgb_deep` regressor, 103):

| evaluator | 1,000 rows, ms (classifier / regressor) | 1M rows, us/row |
|---|---|---|
| numpy leaf masks (today) | 0.74-1.33 / 0.90-1.65 | - |
| numba, node walk (`while not leaf`), rows in blocks of 64 | 2.83 / 4.66 | 2.7 / 4.4 |
| numba, node walk to a fixed depth (no branch, leaves loop) | 4.67 / 7.65 | 5.1 / 8.4 |
| numba, leaf masks fused, per-column tables | 0.45-0.57 / 0.65-0.82 | 0.44-0.50 / 0.59-0.63 |
| numba, leaf masks fused, merged tables (this module) | 0.53 / 0.52 | 0.31 / 0.37 |

A walk pays a mispredicted branch at most levels; the masks pay a few vector ANDs per
table and one `cttz` per tree, without a branch.

The compiled code is off the request path: `warm_up()` imports numba and loads (or
compiles) the one kernel a model needs, for its dtypes; the model API starts it in a
background thread when it builds a model's leaf masks (`start_warm_up`, at its first large
batch) and scores on numpy until it is done; batch scoring waits for it at load
(`InputSums`: its inputs binned in the kernel too). Until
then, and wherever numba is missing or fails, `ready()` is None and the numpy leaf masks
answer. Each evaluator is
checked against the numpy masks (bit for bit) on its first batch before it answers
(`masks.MaskedTrees`), or against the library's raw scores at load (batch scoring).

A request's rows stay on one thread. Sharing them with a pool thread (the kernel releases
the GIL; slices taken by the caller and the helper as each gets to run, only while no other
request was in the app) was measured and dropped (2026-12-04, this 2-core machine, shared,
alternated, in process): a 1,000-row XGBoost request (parse, preprocess, trees) took
1.08-2.8x the wall time and 1.08-1.19x the CPU of one thread at load 4-7, 0.98-1.07x the
wall time and 1.07-1.19x the CPU at load 1.6 (the kernel is 0.35 ms of it: the hand-off,
and a woken helper preempted while it needs the GIL, cost about what it saves), and
`bench_model_api.py`'s p99 at 1,000 rows x 1 connection was 135 and 175 ms in two of three
comparisons (main: 17-22 ms). numba's own `parallel=True` (OpenMP threads, spinning) took
3x the CPU.

The kernels' cache (`NUMBA_CACHE_DIR`): `ML_PIPELINE_NUMBA_CACHE_DIR`, else
`<tmp>/ml_pipeline-numba-cache` (shared by the processes of a machine); a folder that cannot
be written falls back to a fresh temporary one, and, if none can, the kernels compile
without a cache. `ML_PIPELINE_NUMBA=0` turns the compiled path off;
`ML_PIPELINE_NUMBA_WAIT=1` makes the warm-up wait (benchmarks).

Categorical splits (LightGBM's and XGBoost's native ones, `train.build_pipeline`): a
categorical column is one table of (codes + other + missing) x trees rows, as for the numpy
masks; the kernel bins it by its code (`codes`), as `LeafMasks.column_bins` does. Until
2026-12-04 the kernel binned it as a numeric column with no thresholds (reading the next
column's), so the first-batch check refused it and every LightGBM and XGBoost champion
with categorical columns stayed on the numpy masks (1,000 rows: 1.5 / 2.9 ms of CPU).
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

CACHE_ENV = "ML_PIPELINE_NUMBA_CACHE_DIR"
SWITCH_ENV = "ML_PIPELINE_NUMBA"
#: `1`: `start_warm_up` waits for the kernel (benchmarks that time it from the first call)
WAIT_ENV = "ML_PIPELINE_NUMBA_WAIT"
#: the kernel (`numba_kernels.matrix_sums`), by name: what `warm_up` loads
MATRIX = "matrix"

_lock = threading.Lock()
_state: dict[str, Any] = {"kernels": None, "failed": None, "warm": set(), "threads": {}}


def cache_dir() -> Path | None:
    """A writable folder for numba's cache, or None when none can be written."""
    configured = os.environ.get(CACHE_ENV, "").strip()
    wanted = Path(configured or Path(tempfile.gettempdir()) / "ml_pipeline-numba-cache")
    if _writable(wanted):
        return wanted
    try:
        fresh = Path(tempfile.mkdtemp(prefix="ml_pipeline-numba-cache-"))
    except OSError:
        return None
    log.warning("numba cache folder %s is not writable: using %s", wanted, fresh)
    return fresh


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder):
            pass
    except OSError:
        return False
    return True


def enabled() -> bool:
    return os.environ.get(SWITCH_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def _key(kernel: str, table_dtype: Any, sum_dtype: Any) -> tuple[str, str, str]:
    return kernel, np.dtype(table_dtype).name, np.dtype(sum_dtype).name


def ready(kernel: str, table_dtype: Any, sum_dtype: Any) -> ModuleType | None:
    """The compiled kernels once `warm_up` loaded `kernel` for these dtypes, else None
    (never waits)."""
    if _key(kernel, table_dtype, sum_dtype) in _state["warm"]:
        return _state["kernels"]
    return None


def failure() -> str | None:
    """Why the compiled kernels are not available (None: available or not tried yet)."""
    return _state["failed"]


def warm_up(kernel: str, table_dtype: Any, sum_dtype: Any) -> ModuleType | None:
    """Import numba and load (or compile) `kernel` for masks of `table_dtype` summed in
    `sum_dtype`; the kernels, or None (numba missing, turned off, or failing: `failure()`
    says why)."""
    key = _key(kernel, table_dtype, sum_dtype)
    with _lock:
        if key in _state["warm"] or _state["failed"] is not None:
            return _state["kernels"]
        if not enabled():
            _state["failed"] = f"{SWITCH_ENV}=0"
            return None
        try:
            with _scipy_hidden():
                kernels = _state["kernels"] or _import()
                _exercise(kernels, *key)
        except Exception as exc:  # numba missing, or a compiler failure: numpy answers
            _state["failed"] = f"{type(exc).__name__}: {exc}"
            log.warning("compiled tree kernels unavailable (%s): numpy leaf masks", exc)
            return None
        _state["kernels"] = kernels
        _state["warm"].add(key)
    # numba, its compiler and the kernel are long-lived, and were made after the model's
    # load froze what was there (`state.py`): out of the collector's view too, or the
    # first collections during traffic traverse them (~80,000 objects: 5-12 ms pauses of
    # the event loop, measured in process at load ~9). Only in a process that freezes
    # (the model API): elsewhere (batch scoring) the collector keeps its usual view.
    if gc.get_freeze_count():
        gc.freeze()
    return kernels


def start_warm_up(kernel: str, table_dtype: Any, sum_dtype: Any) -> None:
    """`warm_up` in a daemon thread (once per kernel and dtypes), so that no request waits."""
    key = _key(kernel, table_dtype, sum_dtype)
    if os.environ.get(WAIT_ENV, "").strip() == "1":  # benchmarks: the kernel from the start
        warm_up(*key)
        return
    with _lock:
        if key in _state["threads"] or key in _state["warm"] or not enabled():
            return
        thread = threading.Thread(
            target=warm_up, args=key, name=f"numba-warm-up-{'-'.join(key)}", daemon=True
        )
        _state["threads"][key] = thread
        thread.start()


@contextmanager
def _scipy_hidden() -> Iterator[None]:
    """scipy hidden from numba while it imports and compiles, unless it is loaded already.

    numba imports scipy when it is installed: at its import, to check scipy's version, and
    when it compiles, for its BLAS/LAPACK bindings. Our kernels need neither, and the model
    API's server holds no scipy (numpy + onnxruntime: test_api_live). Where scipy is loaded
    already (a worker that verified the model with scikit-learn) nothing is hidden."""
    if "scipy" in sys.modules:
        yield
        return
    sys.modules["scipy"] = None  # type: ignore[assignment]  # import scipy -> ImportError
    try:
        yield
    finally:
        if "scipy" in sys.modules and sys.modules["scipy"] is None:
            del sys.modules["scipy"]


def _import() -> ModuleType:
    folder = cache_dir()
    if folder is not None and "NUMBA_CACHE_DIR" not in os.environ:
        os.environ["NUMBA_CACHE_DIR"] = str(folder)
    if folder is None:
        os.environ.setdefault("NUMBA_DISABLE_CACHE", "1")  # read at numba's import
    from include.ml_pipeline.serving.compiled import numba_kernels

    return numba_kernels


def _exercise(kernels: ModuleType, kernel: str, table_dtype: str, sum_dtype: str) -> None:
    """One call of `kernel` with these dtypes (compiles it, or loads it from the cache)."""
    tables = np.full((3, 2), 1, dtype=table_dtype)
    at = np.zeros(1, dtype=np.int64)
    values = np.zeros((2, 1), dtype=sum_dtype)
    class_of = np.zeros(2, dtype=np.int64)
    base = np.zeros(1, dtype=sum_dtype)
    out = np.empty((1, 1), dtype=np.float64)
    one = np.ones(1, dtype=np.int64)
    columns = np.asarray([0, 1], dtype=np.int64)
    x = np.zeros((1, 1))
    flags = (False, sum_dtype == "float32")
    codes = np.full(1, -1, dtype=np.int64)
    kernels.matrix_sums(
        x, at, np.zeros(1), columns, codes, at, one, tables, at, *flags, values, class_of, base, out
    )


class LeafSums:
    """What the kernel reads of a `LeafMasks` and its (merged) tables."""

    def __init__(self, trees: Any, tables: list[np.ndarray]):
        self.k = trees.k
        self.tables = np.ascontiguousarray(np.concatenate(tables))
        self.table_at = np.cumsum([0] + [len(t) for t in tables[:-1]]).astype(np.int64)
        self.values = np.ascontiguousarray(trees.values)
        self.dtypes = (trees.dtype, trees.sum_dtype)
        self.base = np.asarray(trees.baseline, dtype=trees.sum_dtype)
        self.class_of = np.zeros(trees.n_trees, dtype=np.int64)
        for c, (first, last) in enumerate(trees._class_trees):
            self.class_of[first:last] = c


class MatrixSums(LeafSums):
    """`masks.MaskedTrees` compiled: bins found in the kernel from the matrix."""

    def __init__(self, masked: Any):
        trees = masked.trees
        if trees.zero_as_missing:
            raise ValueError("zero-as-missing features are binned in numpy")
        super().__init__(trees, masked.tables)
        columns = masked.columns
        self.columns = np.asarray(columns, dtype=np.int64)
        found = [trees.columns[c][0] for c in columns]
        self.thresholds = np.concatenate(found).astype(np.float64)
        self.threshold_at = np.cumsum([0] + [len(t) for t in found]).astype(np.int64)
        #: per used column: its number of codes when split on categories, else -1
        self.codes = np.asarray([trees.categorical.get(c, -1) for c in columns], dtype=np.int64)
        # masked.strides: (columns x tables), one nonzero per column
        self.table_of = np.argmax(masked.strides != 0, axis=1).astype(np.int64)
        self.stride = masked.strides[np.arange(len(columns)), self.table_of].astype(np.int64)
        self.strict, self.round32 = bool(trees.strict), bool(trees.float32)

    def __call__(self, kernels: ModuleType, x: np.ndarray) -> np.ndarray:
        out = np.empty((x.shape[0], self.k), dtype=np.float64)
        kernels.matrix_sums(
            np.ascontiguousarray(x, dtype=np.float64),
            self.columns,
            self.thresholds,
            self.threshold_at,
            self.codes,
            self.table_of,
            self.stride,
            self.tables,
            self.table_at,
            self.strict,
            self.round32,
            self.values,
            self.class_of,
            self.base,
            out,
        )
        return out


class InputSums(MatrixSums):
    """Batch scoring's `MaskPlan` compiled: its inputs (scaled numeric columns, and each
    categorical column's one-hot slot as a number, its thresholds at 0.5, 1.5, ... so
    that its bin is the slot) side by side in one matrix, binned in the kernel."""

    def __init__(self, plan: Any, thresholds: list[np.ndarray]):
        trees = plan.trees
        if trees.zero_as_missing:
            raise ValueError("zero-as-missing features are binned in numpy")
        LeafSums.__init__(self, trees, plan.tables)
        self.columns = np.arange(len(thresholds), dtype=np.int64)
        self.thresholds = np.concatenate(thresholds).astype(np.float64)
        self.threshold_at = np.cumsum([0] + [len(t) for t in thresholds]).astype(np.int64)
        self.codes = np.full(len(thresholds), -1, dtype=np.int64)  # slots: as thresholds
        self.table_of = np.zeros(len(thresholds), dtype=np.int64)
        self.stride = np.zeros(len(thresholds), dtype=np.int64)
        for table, (members, strides) in enumerate(zip(plan.members, plan.strides, strict=True)):
            self.table_of[members] = table
            self.stride[members] = strides
        self.strict, self.round32 = bool(trees.strict), bool(trees.float32)
