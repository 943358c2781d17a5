"""Request parsing and validation: bytes in, `Batch` out, or a `RequestError` whose
message names the problem.

Accepted bodies for `POST /invocations` (MLflow's scoring protocol):

* `application/json` with exactly one of
  `{"dataframe_split": {"columns": [...], "data": [[...], ...]}}` (`index` ignored),
  `{"dataframe_records": [{...}, ...]}`,
  `{"instances": [{...}, ...]}` (or a dict of column lists),
  `{"inputs": {"col": [...], ...}}` (or a list of records);
  an optional `params` key is accepted and ignored (sklearn models take no params).
* `text/csv` with a header row.

Rules (also used by `POST /predict`): every feature column must be present; a column the
model does not take is ignored, as `mlflow models serve` does, and named in the batch's
`ignored_columns` (the API reports them, or refuses them in strict mode); numeric columns
take JSON numbers or null (booleans and strings are rejected; in CSV an empty field is
missing); categorical columns take strings or null. A record that lacks a column has a
missing value there (pandas semantics), but a column absent from every record is a
missing column; `POST /predict`'s typed records must each have every column. The batch
must have 1..max_rows rows.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import replace
from operator import itemgetter
from typing import Any, Literal

import msgspec
import numpy as np
import orjson

from include.ml_pipeline.serving.batch import Batch

FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
_NUMBER_TYPES = {int, float, type(None)}
_TEXT_TYPES: set[type] = {str, type(None)}
_ROW_DECODERS_MAX = 64  # column orders whose typed row decoder is kept, per model
_FEW_VALUES = 64  # numeric values of a typed batch checked for infinities in Python
_INF = float("inf")
_LITERAL_MAX = 1024  # a categorical column with more known categories is decoded as text
_LITERAL_MISSES_MAX = 8  # bodies with an unseen category before the known ones stop being used


class _Split(msgspec.Struct, forbid_unknown_fields=True):
    """`dataframe_split` as the fast path takes it: the rows left undecoded until the
    column order, hence each position's type, is known."""

    columns: list[str]
    data: msgspec.Raw
    index: list = []


class _SplitBody(msgspec.Struct, forbid_unknown_fields=True):
    dataframe_split: _Split
    params: dict = {}


_SPLIT_BODY = msgspec.json.Decoder(_SplitBody)


class RequestError(Exception):
    """A client error: HTTP `status`, a short machine `kind` and a human message."""

    def __init__(self, status: int, kind: str, message: str):
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message


def _bad(kind: str, message: str, status: int = 400) -> RequestError:
    return RequestError(status, kind, message)


class FeatureParser:
    """Validates payloads against one model's feature columns."""

    def __init__(
        self,
        numeric: list[str],
        categorical: list[str],
        max_rows: int,
        categories: Mapping[str, Sequence[Any]] | None = None,
    ):
        """`categories`: the categories the model knows, per categorical column (a speed
        hint only: `split_fast` decodes them to these very string objects, whose hashes
        are cached, so the predictor's lookups cost less; any other value is still taken)."""
        self.numeric = tuple(numeric)
        self.categorical = tuple(categorical)
        self.columns = (*self.numeric, *self.categorical)
        self.column_set = frozenset(self.columns)
        self.max_rows = max_rows
        self.categories = {
            column: known
            for column, values in (categories or {}).items()
            if column in self.categorical
            and 0
            < len(known := tuple(dict.fromkeys(v for v in values if type(v) is str)))
            <= _LITERAL_MAX
        }
        self._literal_misses = 0
        # (column order, known categories used, whole body) -> msgspec decoder
        self._decoders: dict[tuple[tuple[str, ...], bool, bool], msgspec.json.Decoder] = {}
        self._last_columns: tuple[str, ...] = self.columns  # the column order expected next
        self._layouts: dict[tuple[str, ...], tuple] = {}  # `_layout`'s, per column order

    # ----------------------------------------------------------------- entry points

    def parse_json_body(self, body: bytes) -> Batch:
        """Parse an MLflow scoring-protocol JSON body: a well-formed `dataframe_split`
        by the typed fast path (`split_fast`), anything else (or a body it refuses) by
        the general one, whose errors name the problem."""
        batch = self.split_fast(body)
        if batch is not None:
            return batch
        payload = load_json(body)
        if not isinstance(payload, dict):
            raise _bad(
                "bad_format",
                "the JSON body must be an object with one of the keys "
                f"{', '.join(FORMATS)}; got {type(payload).__name__}",
            )
        keys = [k for k in payload if k in FORMATS]
        other = [k for k in payload if k not in FORMATS and k != "params"]
        if len(keys) != 1 or other:
            raise _bad(
                "bad_format",
                f"the JSON body must have exactly one of the keys {', '.join(FORMATS)}"
                f" (plus optional 'params'); got keys {sorted(payload)}",
            )
        if "params" in payload and not isinstance(payload["params"], dict):
            raise _bad(
                "bad_format", "'params' must be an object (the model takes none; they are ignored)"
            )
        key = keys[0]
        data = payload[key]
        if key == "dataframe_split":
            if not isinstance(data, dict) or "data" not in data:
                raise _bad(
                    "bad_format", "'dataframe_split' must be an object with 'columns' and 'data'"
                )
            unexpected = sorted(str(k) for k in data if k not in ("columns", "data", "index"))
            if unexpected:
                raise _bad(
                    "bad_format",
                    "'dataframe_split' takes only 'columns', 'data' and "
                    f"'index'; got also {', '.join(unexpected)}",
                )
            if not isinstance(data.get("index", []), list):
                raise _bad("bad_format", "'dataframe_split.index' must be a list (it is ignored)")
            columns = data.get("columns")
            if columns is None:
                raise _bad(
                    "missing_columns",
                    "'dataframe_split' needs 'columns' naming "
                    f"the features: {', '.join(self.columns)}",
                )
            batch = self.from_split(columns, data["data"])
            if batch.ignored_columns or b"\n" in body or b"\r" in body:
                return batch
            return replace(batch, raw_split=body)  # one line: the log can embed it as is
        if key == "dataframe_records":
            return self.from_records(data, key)
        if isinstance(data, dict):
            return self.from_columns(data, key)
        return self.from_records(data, key)

    def split_fast(self, body: bytes) -> Batch | None:
        """A `dataframe_split` body decoded straight into typed rows by msgspec, which
        checks in C what `from_split` and `_check_types` check in Python (a row is a
        list of one value per column; a feature takes a number / a string or null; a
        boolean is no number): the same `Batch`, about 0.25 ms less of CPU per 1,000
        rows. None when msgspec refuses the body: the general path then parses it again
        and names the problem, so an error reads as it always did.

        The body is decoded in one pass with the row types of the column order of the
        previous body (clients send the same order every time); a body in another order
        (its `columns` differ) is decoded again with its own: the rows are left raw in a
        first pass, then decoded with the types of their columns."""
        rows = None
        guess = self._last_columns
        literal = bool(self.categories)
        try:
            split = self._decoder(guess, literal, True).decode(body).dataframe_split
            if len(split.columns) == len(guess) and tuple(split.columns) == guess:
                columns, rows = split.columns, split.data
        except (msgspec.DecodeError, UnicodeDecodeError):
            pass
        if rows is None:
            try:
                undecoded = _SPLIT_BODY.decode(body).dataframe_split
                columns = undecoded.columns
                rows = self._decode_rows(tuple(columns), undecoded.data)
            except (msgspec.DecodeError, UnicodeDecodeError):
                return None
            self._last_columns = tuple(columns)
        ignored, numeric_at, categorical_at = self._layout(columns)
        self._check_rows(len(rows))
        by_column = list(zip(*rows, strict=True))  # one tuple per given column (C speed)
        # one line: the log can embed it as is
        raw = None if ignored or b"\n" in body or b"\r" in body else body
        return self._assemble(
            [by_column[i] for i in numeric_at],
            [by_column[i] for i in categorical_at],
            len(rows),
            ignored,
            typed=True,
            raw_split=raw,
        )

    def _layout(
        self, columns: list[str]
    ) -> tuple[tuple[str, ...], tuple[int, ...], tuple[int, ...]]:
        """A `dataframe_split` column order's ignored columns (`_check_columns`: its
        errors, every time) and where the numeric and categorical features are in it;
        a valid order is checked once (the last `_ROW_DECODERS_MAX` orders are kept)."""
        key = tuple(columns)
        layout = self._layouts.get(key)
        if layout is None:
            ignored = self._check_columns(columns, "'dataframe_split.columns'")
            position = {c: i for i, c in enumerate(columns)}
            layout = (
                ignored,
                tuple(position[c] for c in self.numeric),
                tuple(position[c] for c in self.categorical),
            )
            if len(self._layouts) >= _ROW_DECODERS_MAX:
                self._layouts.pop(next(iter(self._layouts)))
            self._layouts[key] = layout
        return layout

    def _decode_rows(self, columns: tuple[str, ...], data: msgspec.Raw) -> list[tuple]:
        """The raw rows of `columns` as typed tuples: with the known categories, else (a
        category the model has not seen) as text; past `_LITERAL_MISSES_MAX` such bodies
        the known categories are no longer tried."""
        if self.categories:
            try:
                return self._decoder(columns, True, False).decode(data)
            except msgspec.DecodeError:
                rows = self._decoder(columns, False, False).decode(data)
                self._literal_misses += 1
                if self._literal_misses >= _LITERAL_MISSES_MAX:
                    self.categories = {}  # unseen categories are common here: text only
                    self._decoders.clear()
                return rows
        return self._decoder(columns, False, False).decode(data)

    def _decoder(
        self, columns: tuple[str, ...], literal: bool, whole: bool
    ) -> msgspec.json.Decoder:
        """Rows of `columns` as tuples of one typed value each (a column the model does
        not take: any JSON value; a categorical one with `literal`: its known categories
        or null), or, `whole`, the body holding such rows; kept for the last
        `_ROW_DECODERS_MAX` orders."""
        key = (columns, literal, whole)
        decoder = self._decoders.get(key)
        if decoder is None:
            numeric, categorical = set(self.numeric), set(self.categorical)
            known = self.categories if literal else {}
            types = tuple(
                float | None
                if c in numeric
                else (Literal[known[c]] | None if c in known else str | None)  # type: ignore[misc]
                if c in categorical
                else Any
                for c in columns
            )
            row_type = list[tuple[types]]  # type: ignore[valid-type]
            if whole:
                split = msgspec.defstruct(
                    "_TypedSplit",
                    [("columns", list[str]), ("data", row_type), ("index", list, [])],
                    forbid_unknown_fields=True,
                )
                body = msgspec.defstruct(
                    "_TypedSplitBody",
                    [("dataframe_split", split), ("params", dict, {})],
                    forbid_unknown_fields=True,
                )
                decoder = msgspec.json.Decoder(body)
            else:
                decoder = msgspec.json.Decoder(row_type)
            if len(self._decoders) >= 4 * _ROW_DECODERS_MAX:
                self._decoders.pop(next(iter(self._decoders)))
            self._decoders[key] = decoder
        return decoder

    def parse_csv_body(self, body: bytes) -> Batch:
        """Parse a CSV body with a header row."""
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _bad("bad_encoding", f"the CSV body is not valid UTF-8: {exc}") from exc
        try:
            rows = list(csv.reader(io.StringIO(text)))
        except csv.Error as exc:
            raise _bad("malformed_csv", f"the CSV body cannot be parsed: {exc}") from exc
        rows = [r for r in rows if r]
        if not rows:
            raise _bad("empty_batch", "the CSV body is empty; expected a header and rows")
        header, data = rows[0], rows[1:]
        ignored = self._check_columns(header, "CSV header")
        self._check_rows(len(data))
        width = len(header)
        for i, row in enumerate(data):
            if len(row) != width:
                raise _bad(
                    "malformed_csv",
                    f"CSV row {i + 1} has {len(row)} fields; the header has {width}",
                )
        position = {c: i for i, c in enumerate(header)}
        numeric = np.empty((len(data), len(self.numeric)), dtype=np.float64)
        for j, column in enumerate(self.numeric):
            p = position[column]
            for i, row in enumerate(data):
                text_value = row[p].strip()
                if text_value == "":
                    numeric[i, j] = np.nan
                    continue
                try:
                    numeric[i, j] = float(text_value)
                except ValueError:
                    raise _bad(
                        "wrong_type",
                        f"column {column!r} must be numeric; row {i + 1} has {row[p]!r}",
                        422,
                    ) from None
        self._check_finite(numeric)
        categorical = tuple(
            [row[position[c]] if row[position[c]] != "" else None for row in data]
            for c in self.categorical
        )
        return Batch(self.numeric, self.categorical, numeric, categorical, ignored_columns=ignored)

    # ----------------------------------------------------------------- shapes

    def from_split(self, columns: Any, data: Any) -> Batch:
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            raise _bad("bad_format", "'dataframe_split.columns' must be a list of strings")
        if not isinstance(data, list):
            raise _bad("bad_format", "'dataframe_split.data' must be a list of rows")
        ignored = self._check_columns(columns, "'dataframe_split.columns'")
        self._check_rows(len(data))
        width = len(columns)
        for i, row in enumerate(data):
            if not isinstance(row, list) or len(row) != width:
                raise _bad(
                    "bad_format",
                    f"'dataframe_split.data' row {i} must be a list of "
                    f"{width} values (one per column)",
                )
        position = {c: i for i, c in enumerate(columns)}
        by_column = list(zip(*data, strict=True))  # one tuple per given column (C speed)
        values = {c: by_column[position[c]] for c in self.columns}
        return self._build(values, len(data), ignored)

    def from_records(self, records: Any, where: str, complete: bool = False) -> Batch:
        """`complete`: every record must have every feature column (the typed
        `/predict`), instead of a missing value where a record lacks one."""
        if not isinstance(records, list):
            raise _bad("bad_format", f"{where!r} must be a list of records (objects)")
        self._check_rows(len(records))
        keys: set[str] = set()
        n_columns = len(self.columns)
        uniform = True
        for i, record in enumerate(records):
            if not isinstance(record, dict):
                raise _bad(
                    "bad_format",
                    f"{where!r} item {i} must be an object mapping "
                    f"column to value; got {type(record).__name__}",
                )
            if len(record) != n_columns:
                uniform = False
            keys.update(record)
        ignored = self._check_columns(keys, where)
        if complete and (not uniform or ignored):
            self._check_complete(records, where)
        n = len(records)
        if uniform and not ignored and len(self.columns) > 1:
            # every record has exactly the feature columns: pick and transpose in C
            rows = map(itemgetter(*self.columns), records)
            values: dict[str, Sequence[Any]] = dict(
                zip(self.columns, zip(*rows, strict=True), strict=True)
            )
        else:
            values = {c: [r.get(c) for r in records] for c in self.columns}
        return self._build(values, n, ignored)

    def from_columns(self, data: dict, where: str) -> Batch:
        ignored = self._check_columns(list(data), where)
        lengths = set()
        values = {}
        for column in self.columns:
            column_values = data[column]
            if not isinstance(column_values, list):
                column_values = [column_values]  # a scalar per column means one row
            lengths.add(len(column_values))
            values[column] = column_values
        if len(lengths) != 1:
            raise _bad("bad_format", f"{where!r} columns have different lengths: {sorted(lengths)}")
        n = lengths.pop()
        self._check_rows(n)
        return self._build(values, n, ignored)

    # ----------------------------------------------------------------- checks

    def _check_rows(self, n: int) -> None:
        if n == 0:
            raise _bad("empty_batch", "the batch is empty; send at least one row")
        if n > self.max_rows:
            raise _bad(
                "too_many_rows",
                f"the batch has {n} rows; the limit is {self.max_rows} (MODEL_API_MAX_ROWS)",
                413,
            )

    def _check_columns(self, columns: Any, where: str) -> tuple[str, ...]:
        """The given columns the model does not take (sorted); 422 when a feature column
        is missing, 400 when one is repeated."""
        given = list(columns)
        given_set = set(given)
        if len(given_set) != len(given):
            duplicated = sorted({str(c) for c in given if given.count(c) > 1})
            raise _bad("duplicate_columns", f"{where} repeats columns: {', '.join(duplicated)}")
        if given_set == self.column_set:
            return ()
        missing = [c for c in self.columns if c not in given_set]
        unknown = tuple(sorted(str(c) for c in given_set - self.column_set))
        if not missing:
            return unknown
        parts = [f"missing columns: {', '.join(missing)}"]
        if unknown:
            parts.append(f"unknown columns: {', '.join(unknown)}")
        raise _bad(
            "missing_columns",
            f"{where}: {'; '.join(parts)}. Expected: {', '.join(self.columns)}",
            422,
        )

    def _check_complete(self, records: list[dict], where: str) -> None:
        """Every record has every feature column (422 naming the first that lacks one)."""
        for i, record in enumerate(records):
            if not self.column_set <= record.keys():
                absent = [c for c in self.columns if c not in record]
                raise _bad(
                    "missing_columns",
                    f"{where} item {i} lacks the columns: "
                    f"{', '.join(absent)} (use null for a missing value)",
                    422,
                )

    def _check_finite(self, numeric: np.ndarray, values: list[Sequence] | None = None) -> None:
        """422 naming the first numeric column holding an infinity. `values`: the
        matrix's columns as Python floats or None (msgspec's typed rows), checked in
        Python when they are few (a 1-row request: ~1.5 us less than numpy's calls)."""
        if values is not None and numeric.size <= _FEW_VALUES:
            for column, column_values in zip(self.numeric, values, strict=True):
                if _INF in column_values or -_INF in column_values:
                    raise _bad("wrong_type", f"column {column!r} has a non-finite number", 422)
            return
        infinite = np.isinf(numeric)
        if infinite.any():
            column = self.numeric[int(np.nonzero(infinite.any(axis=0))[0][0])]
            raise _bad("wrong_type", f"column {column!r} has a non-finite number", 422)

    def _build(
        self,
        values: Mapping[str, Sequence],
        n: int,
        ignored: tuple[str, ...] = (),
        typed: bool = False,
        raw_split: bytes | None = None,
    ) -> Batch:
        """`typed`: the values' types are already checked (`split_fast`); `raw_split`:
        the batch's body, for the log (`Batch.raw_split`)."""
        return self._assemble(
            [values[c] for c in self.numeric],
            [values[c] for c in self.categorical],
            n,
            ignored,
            typed,
            raw_split,
        )

    def _assemble(
        self,
        numeric_values: list[Sequence],
        categorical_values: list[Sequence],
        n: int,
        ignored: tuple[str, ...] = (),
        typed: bool = False,
        raw_split: bytes | None = None,
    ) -> Batch:
        """`_build` on the values of the numeric and the categorical columns, in order."""
        if not typed:
            for column, column_values in zip(self.numeric, numeric_values, strict=True):
                _check_types(column, column_values, _NUMBER_TYPES, "a number")
        if self.numeric:
            try:  # one conversion for all numeric columns; None becomes NaN
                numeric = np.array(numeric_values, dtype=np.float64).T
            except (OverflowError, ValueError, TypeError):
                numeric = np.empty((n, len(self.numeric)), dtype=np.float64)
                for j, column in enumerate(self.numeric):
                    try:
                        numeric[:, j] = numeric_values[j]
                    except (OverflowError, ValueError, TypeError) as exc:
                        raise _bad("wrong_type", f"column {column!r}: {exc}", 422) from None
            self._check_finite(numeric, numeric_values if typed else None)
        else:
            numeric = np.empty((n, 0), dtype=np.float64)
        categorical = []
        for column, column_values in zip(self.categorical, categorical_values, strict=True):
            if not typed:
                _check_types(column, column_values, _TEXT_TYPES, "a string")
            categorical.append(
                column_values if type(column_values) is list else list(column_values)
            )
        return Batch(
            self.numeric, self.categorical, numeric, tuple(categorical), raw_split, ignored
        )


def parser_for(predictor: Any, numeric: list[str], categorical: list[str], max_rows: int):
    """The `FeatureParser` of a model served by `predictor`, with the categories its
    encoders know when it tells them (`CompiledPredictor.categories`)."""
    known = getattr(predictor, "categories", None)
    categories = known(categorical) if callable(known) else None
    return FeatureParser(numeric, categorical, max_rows, categories)


def _check_types(column: str, values: Sequence, allowed: set[type], what: str) -> None:
    """422 naming the column and the first value whose type is not in `allowed`."""
    if not set(map(type, values)) <= allowed:
        bad = next(v for v in values if type(v) not in allowed)
        raise _bad(
            "wrong_type",
            f"column {column!r} must be {what} or null; got {bad!r} ({type(bad).__name__})",
            422,
        )


def load_json(body: bytes) -> Any:
    """orjson.loads with a 400 naming the parse error."""
    if not body:
        raise _bad("malformed_json", "the request body is empty; expected JSON")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _bad("malformed_json", f"the request body is not valid JSON: {exc}") from None
