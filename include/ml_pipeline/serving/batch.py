"""The in-memory form of a validated request: one float matrix for the numeric columns and
one list per categorical column, in the feature spec's order.

Parsing (`parsing.py`) produces a `Batch`, predictors consume it, and the inference log
turns it back into records in its background thread. A `Batch` is never mutated after
it is built, so it can be handed to the log writer without copying.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Batch:
    """Validated model input.

    `numeric` has shape (rows, len(numeric_columns)), float64, NaN for missing values.
    `categorical` has one list of `str | None` per categorical column, each `rows` long.
    """

    numeric_columns: tuple[str, ...]
    categorical_columns: tuple[str, ...]
    numeric: np.ndarray
    categorical: tuple[list[Any], ...]
    # The request body when it was a one-line JSON `dataframe_split` payload: the inference
    # log embeds it as received instead of encoding the features again.
    raw_split: bytes | None = None
    # Columns the request sent that the model does not take: ignored (as `mlflow models
    # serve` does) and reported in the `X-Ignored-Columns` header, or refused in strict mode.
    ignored_columns: tuple[str, ...] = ()

    @property
    def rows(self) -> int:
        return int(self.numeric.shape[0]) if self.numeric_columns else len(self.categorical[0])

    def to_frame(self):
        """The batch as the pandas frame `coerce_features` would produce (slow path only)."""
        import pandas as pd

        data: dict[str, Any] = {}
        for j, column in enumerate(self.numeric_columns):
            data[column] = self.numeric[:, j]
        for column, values in zip(self.categorical_columns, self.categorical, strict=False):
            data[column] = pd.Series(values, dtype=object)
        return pd.DataFrame(data)

    def records(self) -> list[dict[str, Any]]:
        """One dict per row (NaN numeric values become None)."""
        names = [*self.numeric_columns, *self.categorical_columns]
        numeric_rows = (
            # numpy's stubs do not take None as a where() value; it gives an object array
            np.where(np.isnan(self.numeric), None, self.numeric).tolist()  # type: ignore[call-overload]
            if self.numeric_columns
            else [[] for _ in range(self.rows)]
        )
        out = []
        for i, row in enumerate(numeric_rows):
            values = [*row, *(column[i] for column in self.categorical)]
            out.append(dict(zip(names, values, strict=False)))
        return out

    def slice(self, start: int, stop: int) -> Batch:
        """Rows `start` to `stop` (the numeric part is a view, not a copy)."""
        return Batch(
            self.numeric_columns,
            self.categorical_columns,
            self.numeric[start:stop],
            tuple(column[start:stop] for column in self.categorical),
        )


def batch_from_frame(frame, numeric: list[str], categorical: list[str]) -> Batch:
    """Build a `Batch` from a frame already passed through `coerce_features`."""
    matrix = (
        frame[numeric].to_numpy(dtype=np.float64, copy=True)
        if numeric
        else np.empty((len(frame), 0), dtype=np.float64)
    )
    cats = tuple(
        [None if v is None or (isinstance(v, float) and v != v) else str(v) for v in frame[c]]
        for c in categorical
    )
    return Batch(tuple(numeric), tuple(categorical), matrix, cats)


def concat_batches(first: Batch, *rest: Batch) -> Batch:
    """The rows of `first`, then those of each of `rest` in turn (same columns)."""
    batches = (first, *rest)
    return Batch(
        first.numeric_columns,
        first.categorical_columns,
        np.vstack([b.numeric for b in batches]),
        tuple(
            [value for b in batches for value in b.categorical[i]]
            for i in range(len(first.categorical))
        ),
    )
