"""One part of the input scored chunk by chunk into its own objects under the run's folder:

    predictions/part-NNNNN.parquet   key columns, prediction (+ proba_<class>), model_version,
                                     scoring_run_id
    rejects/part-NNNNN.parquet       the rows not scored, every input column, row_number and
                                     reject_reason
    samples/part-NNNNN.parquet       a uniform sample of the scored rows (features and
                                     predictions) for the batch's drift check
    parts/part-NNNNN.json            the part's report, written last: it says the part is done

Each object is written under a temporary name and moved into place (`storage.staged_output`;
on an object store, uploaded once complete), and a part writes only its own names, so a
retried part (the first try killed mid-write) rewrites only itself: no duplicate row, no
half file, nothing of another part touched. Leftover temporary files of a killed try are
removed by the next one. Memory holds one chunk, the writers' buffers and the sample.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from include.ml_pipeline import storage
from include.ml_pipeline.batch_scoring.contract_check import (
    ROW_NUMBER,
    SOURCE_FILE,
    InputCheck,
    reject_reasons,
)
from include.ml_pipeline.batch_scoring.model import PREDICTION, BatchModel
from include.ml_pipeline.batch_scoring.source import CSV, DEFAULT_CHUNK_ROWS, Part, iter_chunks

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

log = logging.getLogger(__name__)

PREDICTIONS = "predictions"
REJECTS = "rejects"
SAMPLES = "samples"
PARTS = "parts"
MODEL_VERSION = "model_version"
SCORING_RUN_ID = "scoring_run_id"
REJECT_REASON = "reject_reason"


@dataclass(frozen=True)
class PartReport:
    """What one part did: rows read, scored and refused (by reason), with which version."""

    name: str
    index: int
    source: str
    rows_in: int
    rows_out: int
    rows_rejected: int
    reject_reasons: dict[str, int] = field(default_factory=dict)
    model_version: str = ""
    scoring_run_id: str = ""
    predict_path: str = ""
    seconds: float = 0.0
    predictions_uri: str = ""
    rejects_uri: str | None = None
    sample_uri: str | None = None
    #: CPU seconds (every thread of the process) per stage: read, check, score, output,
    #: write, sample (`_StageClock`)
    cpu_seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PartReport:
        return cls(**data)


def part_uri(run_uri: str, folder: str, name: str, suffix: str = ".parquet") -> str:
    return storage.join(run_uri, folder, f"{name}{suffix}")


def _remove_leftovers(uri: str) -> None:
    """Temporary files a killed try left beside `uri` (`.<name>.<pid>.part`)."""
    local = storage.local_path(uri)
    if local is not None and local.parent.is_dir():
        for stale in local.parent.glob(f".{local.name}.*"):
            stale.unlink(missing_ok=True)


class _StageClock:
    """CPU seconds of the process (all its threads: Arrow's readers, the predict threads)
    spent in each stage of a part, each `lap` charging the time since the previous one."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.last = time.process_time()

    def lap(self, stage: str) -> None:
        now = time.process_time()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - self.last
        self.last = now

    def rounded(self) -> dict[str, float]:
        return {stage: round(value, 3) for stage, value in self.seconds.items()}


class _NothingWritten(Exception):
    """Raised inside `storage.staged_output` so that nothing is moved into place."""


@contextlib.contextmanager
def _staged_writer(uri: str) -> Iterator[_LazyWriter]:
    """A Parquet writer whose file appears at `uri` only when the block ends well and
    something was written (else an earlier try's object at `uri` is removed)."""
    _remove_leftovers(uri)
    writer = _LazyWriter()
    try:
        with storage.staged_output(uri) as path:
            writer.path = str(path)
            try:
                yield writer
            finally:
                writer.close()
            if not writer.opened:
                raise _NothingWritten
    except _NothingWritten:
        storage.remove(uri)


class _LazyWriter:
    """Opens its `ParquetWriter` at the first table (its schema is the first table's)."""

    def __init__(self) -> None:
        self.path = ""
        self.writer: Any = None
        self.opened = False
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.writer is None:
            # only the columns made repeating (labels, version, run id) get a dictionary:
            # floats and keys (row numbers, ids) do not repeat, and trying costs time;
            # floats (probabilities, values) are stored uncompressed (snappy finds nothing
            # in them), the row numbers as deltas (16 instead of 20 bytes per row of a
            # binary classifier; writing 0.075 -> 0.066 us per row, measured 2026-12-04)
            repeating = [f.name for f in table.schema if pa.types.is_dictionary(f.type)]
            compression = {
                f.name: "none" if pa.types.is_floating(f.type) else "snappy" for f in table.schema
            }
            deltas = {
                f.name: "DELTA_BINARY_PACKED"
                for f in table.schema
                if f.name == ROW_NUMBER and pa.types.is_int64(f.type)
            }
            # min/max statistics only for the keys (row numbers, ids: what a reader may
            # filter on); none for floats and repeated texts, where computing them was a
            # third of the writing (0.071 -> 0.047 us per row, measured 2026-12-04)
            keyed = [
                f.name
                for f in table.schema
                if not (pa.types.is_floating(f.type) or pa.types.is_dictionary(f.type))
            ]
            self.writer = pq.ParquetWriter(
                self.path,
                table.schema,
                compression=compression,
                use_dictionary=repeating,
                column_encoding=deltas or None,
                write_statistics=keyed,
            )
            self.opened = True
        self.writer.write_table(table)
        self.rows += table.num_rows

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class _Reservoir:
    """A uniform sample of at most `size` rows of the tables it is offered: each row gets
    a random key and the rows with the smallest keys are kept (seeded: a retried part
    keeps the same rows). For a part whose row count is unknown (a CSV file)."""

    def __init__(self, size: int, seed: int, decode: list[str] | None = None) -> None:
        self.size = size
        self.decode = decode
        self.rng = np.random.default_rng(seed)
        self.table: Any = None
        self.keys = np.empty(0)

    def offer(self, table: pa.Table, first: int = 0, scored: np.ndarray | None = None) -> None:
        import pyarrow as pa

        del first, scored  # every row offered is a candidate
        if self.size <= 0 or table.num_rows == 0:
            return
        keys = self.rng.random(table.num_rows)
        if len(self.keys) + len(keys) > self.size:
            # only rows whose key is among the `size` smallest so far can enter
            cut = np.partition(np.concatenate([self.keys, keys]), self.size - 1)[self.size - 1]
            enter = np.flatnonzero(keys <= cut)
            table, keys = table.take(enter), keys[enter]
            if table.num_rows == 0:
                return
        table = _plain(table, self.decode)
        if self.table is None:
            self.table, self.keys = table, keys
        else:
            self.table = pa.concat_tables([self.table, table])
            self.keys = np.concatenate([self.keys, keys])
        if self.table.num_rows > self.size:
            keep = np.sort(np.argpartition(self.keys, self.size - 1)[: self.size])
            self.table = self.table.take(keep)
            self.keys = self.keys[keep]


class _Positions:
    """A uniform sample of a part whose row count is known from metadata (Parquet): the
    positions of `size` of its `rows` rows drawn once (seeded: a retried part keeps the
    same rows), each chunk giving only its rows among them. A drawn row that is rejected
    is not replaced (the sample stays uniform over the scored rows, a little smaller).
    Measured on 1M rows (65,536-row chunks, 50,000 kept): 0.01 us per row instead of the
    reservoir's 0.25 (its random key per row, partition and re-take per chunk were 18% of
    a part's CPU time). The rows taken keep their Arrow dictionaries (an index per row, the
    chunk's texts once) and are decoded once, when the part's sample is joined: the same
    texts, one cast per column and part instead of one per chunk."""

    def __init__(self, size: int, seed: int, rows: int, decode: list[str] | None = None):
        self.decode = decode
        self.positions = np.empty(0, dtype=np.int64)
        if size > 0 and rows > 0:
            rng = np.random.default_rng(seed)
            self.positions = np.sort(rng.choice(rows, size=min(size, rows), replace=False))
        self.pieces: list[pa.Table] = []

    def offer(self, table: pa.Table, first: int, scored: np.ndarray | None = None) -> None:
        """`table`: the scored rows of a chunk whose first row is row `first` of the part;
        `scored`: their positions in the chunk (None: every row of it was scored)."""
        rows = table.num_rows if scored is None or not len(scored) else int(scored[-1]) + 1
        low, high = np.searchsorted(self.positions, [first, first + rows])
        wanted = self.positions[low:high] - first
        if scored is not None and len(wanted):  # chunk positions -> among the scored rows
            at = np.minimum(np.searchsorted(scored, wanted), len(scored) - 1)
            wanted = at[scored[at] == wanted]
        if len(wanted):
            self.pieces.append(table.take(wanted))

    @property
    def table(self) -> pa.Table | None:
        import pyarrow as pa

        return _plain(pa.concat_tables(self.pieces), self.decode) if self.pieces else None


def _csv_types(check: InputCheck) -> dict[str, Any]:
    """CSV columns read as the contract's kinds: numbers as float64, categories as text."""
    import pyarrow as pa

    return {name: pa.float64() for name in check.numeric} | {
        name: pa.string() for name in check.categorical
    }


def _columns_read(check: InputCheck) -> list[str] | None:
    """The columns a part reads: the key columns and the features when no row can be
    refused (a Parquet file's other columns are then never decoded: a wide table costs
    what its model's columns cost); every column (None) when rows may go to the rejects
    file, which holds them whole."""
    if check.non_null_columns or check.strict_categories:
        return None
    return list(dict.fromkeys([*check.key_columns, *check.numeric, *check.categorical]))


def _keys(
    batch: pa.Table, check: InputCheck, first_row: int, source: str | None
) -> dict[str, pa.Array]:
    """The key columns of `batch`'s rows: the input's key columns, else the row number in
    its file (and the file, for an input of several files)."""
    import pyarrow as pa

    if check.key_columns:
        return {name: batch.column(name) for name in check.key_columns}
    keys = {ROW_NUMBER: pa.array(np.arange(first_row, first_row + batch.num_rows))}
    if source is not None:
        keys[SOURCE_FILE] = pa.array([source] * batch.num_rows, type=pa.string())
    return keys


#: Set by whoever runs the process to choose Arrow's memory pool (then left as chosen).
ARROW_POOL_VARIABLE = "ARROW_DEFAULT_MEMORY_POOL"


@contextlib.contextmanager
def _memory_pool() -> Iterator[None]:
    """Arrow's allocations in the block (reading, taking, writing) from jemalloc (the C heap
    where pyarrow is built without it), pyarrow's previous default pool restored after,
    unless the process chose its pool (`ARROW_DEFAULT_MEMORY_POOL`). pyarrow's default,
    mimalloc, gives freed chunks back to the system and faults them in again: a part's
    first chunks cost ~2x their CPU. 1M rows, 4 parts in a fresh process, 8 pairs (load
    2.4-2.7): read 0.115 -> 0.074 us CPU per row, sample 0.041 -> 0.034, 10% less CPU
    and 13% less wall time in all, peak memory 548 -> 521 MB (measured 2026-12-04)."""
    import pyarrow as pa

    if os.environ.get(ARROW_POOL_VARIABLE):
        yield
        return
    previous = pa.default_memory_pool()
    try:
        pool = pa.jemalloc_memory_pool()
    except NotImplementedError:  # pragma: no cover - a pyarrow built without jemalloc
        pool = pa.system_memory_pool()
    pa.set_memory_pool(pool)
    try:
        yield
    finally:
        pa.set_memory_pool(previous)


@_memory_pool()  # a contextmanager is also a decorator: each call runs in a fresh one
def score_part(
    part: Part,
    *,
    model: BatchModel,
    check: InputCheck,
    run_uri: str,
    scoring_run_id: str,
    several_files: bool,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    sample_rows: int = 0,
) -> PartReport:
    """Score `part` with `model` into its objects under `run_uri` (see the module's
    docstring); return its report (also written to `parts/<part>.json`, last). Arrow
    allocates from jemalloc meanwhile (`_memory_pool`)."""
    import pyarrow as pa

    started = time.perf_counter()
    clock = _StageClock()
    source = part.file.name if several_files else None
    sample: _Reservoir | _Positions
    if part.rows is None:
        sample = _Reservoir(sample_rows, seed=part.index, decode=check.categorical)
    else:
        sample = _Positions(sample_rows, part.index, part.rows, decode=check.categorical)
    reasons: dict[str, int] = {}
    rows_in = 0
    row = part.first_row
    predictions_uri = part_uri(run_uri, PREDICTIONS, part.name)
    rejects_uri = part_uri(run_uri, REJECTS, part.name)
    sample_uri = part_uri(run_uri, SAMPLES, part.name)
    features = [*check.numeric, *check.categorical]
    csv_types = _csv_types(check) if part.file.format == CSV else None
    # the compiled paths read categories from Arrow dictionaries: read them as such
    dictionary = check.categorical if model.predictor is not None else None
    chunks = iter_chunks(
        part,
        _columns_read(check),
        chunk_rows=chunk_rows,
        csv_types=csv_types,
        dictionary_columns=dictionary,
    )
    with _staged_writer(predictions_uri) as out, _staged_writer(rejects_uri) as rejected:
        for batch in chunks:
            clock.lap("read")
            chunk = pa.Table.from_batches([batch])
            rows_in += chunk.num_rows
            keys = _keys(chunk, check, row, source)
            bad, texts = reject_reasons(chunk, check)
            good = None
            if texts:
                rejected.write(_refused(chunk, bad, row, texts))
                for text in texts:
                    reasons[text] = reasons.get(text, 0) + 1
                good = np.flatnonzero(~bad)
                chunk = chunk.take(good)
                keys = {name: column.take(good) for name, column in keys.items()}
            clock.lap("check")
            scored = model.score(chunk)
            clock.lap("score")
            columns = {**keys, **{name: _arrow(v) for name, v in scored.items()}}
            columns[MODEL_VERSION] = _repeated(model.version, chunk.num_rows)
            columns[SCORING_RUN_ID] = _repeated(scoring_run_id, chunk.num_rows)
            table = pa.table(columns)
            clock.lap("output")
            out.write(table)
            clock.lap("write")
            if sample_rows:
                kept = chunk.select(features)
                for name in scored:
                    kept = kept.append_column(name, table.column(name))
                sample.offer(kept, row - part.first_row, good)
                clock.lap("sample")
            row += len(bad)
        if not out.opened:  # an empty file: the output still has its columns
            out.write(_empty_output(model, check, part, source))
        rows_out, rows_rejected = out.rows, rejected.rows
    clock.lap("write")  # the writers closed: their last row groups
    sampled = sample.table
    if sampled is not None:
        with storage.staged_output(sample_uri) as path:
            _write_sample(sampled, str(path))
    else:
        storage.remove(sample_uri)
    clock.lap("sample")
    report = PartReport(
        name=part.name,
        index=part.index,
        source=part.file.name,
        rows_in=rows_in,
        rows_out=rows_out,
        rows_rejected=rows_rejected,
        reject_reasons=reasons,
        model_version=model.version,
        scoring_run_id=scoring_run_id,
        predict_path=model.path,
        seconds=round(time.perf_counter() - started, 3),
        predictions_uri=predictions_uri,
        rejects_uri=rejects_uri if rows_rejected else None,
        sample_uri=sample_uri if sampled is not None else None,
        cpu_seconds=clock.rounded(),
    )
    storage.write_json(part_uri(run_uri, PARTS, part.name, ".json"), report.to_dict())
    log.info(
        "%s: %d rows in, %d scored, %d rejected in %.2f s (%s); CPU seconds by stage: %s",
        part.name,
        rows_in,
        rows_out,
        rows_rejected,
        report.seconds,
        model.path,
        report.cpu_seconds,
    )
    return report


def _write_sample(table: pa.Table, path: str) -> None:
    """The part's drift sample as Parquet: dictionary pages only for texts (features, labels),
    no min/max statistics (the drift check reads the whole file, never filters): the same
    columns, types and values as with pyarrow's defaults, 4.0 instead of 7.1 ms of CPU per
    12,500-row sample (measured 2026-12-04)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = [
        f.name
        for f in table.schema
        if pa.types.is_dictionary(f.type)
        or pa.types.is_string(f.type)
        or pa.types.is_large_string(f.type)
    ]
    pq.write_table(table, path, use_dictionary=texts, write_statistics=False)


def _repeated(value: str, rows: int) -> pa.Array:
    """`value` on every row, dictionary-encoded (one copy of the text, whatever the rows)."""
    import pyarrow as pa

    return pa.DictionaryArray.from_arrays(
        pa.array(np.zeros(rows, dtype=np.int32)), pa.array([value], pa.string())
    )


def _arrow(values: Any) -> pa.Array:
    """A column of the model's output as Arrow (an Arrow array, such as the compiled
    path's dictionary-encoded labels, as it is)."""
    import pyarrow as pa

    if isinstance(values, pa.Array):
        return values
    return pa.array(values)


def _plain(table: pa.Table, names: list[str] | None = None) -> pa.Table:
    """`table` with its dictionary columns (`names` only, when given) decoded: input text
    read as dictionaries is written with the input's type."""
    import pyarrow as pa

    for i, kind in enumerate(table.schema.types):
        if pa.types.is_dictionary(kind) and (names is None or table.column_names[i] in names):
            name = table.column_names[i]
            table = table.set_column(i, name, table.column(i).cast(kind.value_type))
    return table


def _refused(chunk: pa.Table, bad: np.ndarray, first_row: int, reasons: list[str]) -> pa.Table:
    """The rows of `chunk` flagged in `bad`, whole, with their row number in the file and
    why they were not scored."""
    import pyarrow as pa

    where = np.flatnonzero(bad)
    refused = _plain(chunk.take(where))
    name = ROW_NUMBER if ROW_NUMBER not in refused.column_names else f"_{ROW_NUMBER}"
    refused = refused.append_column(name, pa.array(first_row + where))
    return refused.append_column(REJECT_REASON, pa.array(reasons, pa.string()))


def _empty_output(model: BatchModel, check: InputCheck, part: Part, source: str | None) -> pa.Table:
    """The predictions table of a part with no row (its columns, no rows)."""
    import pyarrow as pa

    from include.ml_pipeline.batch_scoring.source import file_schema

    schema = file_schema(part.file)
    empty = pa.table({name: pa.array([], schema.field(name).type) for name in schema.names})
    keys = _keys(empty, check, 0, source)
    empty = {name: pa.array(v) for name, v in model.score(pa.table({})).items()}
    return pa.table(
        {
            **keys,
            **empty,
            MODEL_VERSION: pa.array([], pa.string()),
            SCORING_RUN_ID: pa.array([], pa.string()),
        }
    )


__all__ = ["PREDICTION", "PartReport", "score_part"]
