"""Arrow columns in the model's input form, without a pandas frame per chunk.

`coerce_features` (features.py) defines the form: numeric columns as float64 with NaN for
missing values, categorical columns as text (`1.0` -> `"1"`, `True` -> `"True"`) with
None for missing values. Here the same conversion runs per *distinct* value: a column is
dictionary-encoded by Arrow (C speed), and only its dictionary goes through
`coerce_features`, so the cost of a chunk no longer grows with Python work per row.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa


def _one_array(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A chunked array's single chunk as it is (no concatenation), else its chunks joined."""
    import pyarrow as pa

    if isinstance(array, pa.ChunkedArray):
        return array.chunk(0) if array.num_chunks == 1 else array.combine_chunks()
    return array


def numeric_values(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """`array` as float64 with NaN for missing values, without a copy where Arrow's buffer
    already is one (a float64 column without nulls): read-only, the caller copies it into
    its own matrix."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_null(array.type):
        return np.full(len(array), np.nan)
    array = _one_array(array)
    if not pa.types.is_float64(array.type):
        array = pc.cast(array, pa.float64())
    return array.to_numpy(zero_copy_only=False)


def numeric_column(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """`array` as float64 with NaN for missing values (a copy owned by the caller)."""
    return np.array(numeric_values(array), dtype=np.float64)


def numeric_matrix(batch: pa.RecordBatch | pa.Table, names: list[str]) -> np.ndarray:
    """The columns `names` of `batch` as one (rows x len(names)) float64 matrix."""
    out = np.empty((batch.num_rows, len(names)), dtype=np.float64)
    for j, name in enumerate(names):
        out[:, j] = numeric_column(batch.column(name))
    return out


def category_codes(array: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, list[str]]:
    """`(codes, texts)`: per row (an integer array, possibly Arrow's read-only buffer) the
    index of its value's text in `texts`, -1 where the value is missing; `texts` are the
    distinct values as `coerce_features` writes them."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    from include.ml_pipeline.features import FeatureSpec, coerce_features

    array = _one_array(array)
    if pa.types.is_null(array.type):
        return np.full(len(array), -1, dtype=np.intp), []
    encoded = array if pa.types.is_dictionary(array.type) else pc.dictionary_encode(array)
    indices = encoded.indices
    if indices.null_count:
        indices = indices.fill_null(-1)
    # Arrow's own buffer where it can be (no copy, read-only): an index array for numpy
    codes = indices.to_numpy(zero_copy_only=False)
    dictionary = encoded.dictionary
    text = pa.types.is_string(dictionary.type) or pa.types.is_large_string(dictionary.type)
    if text:  # texts are kept as they are; a dictionary read from a file may repeat one
        texts = dictionary.to_pylist()
        if not pa.types.is_dictionary(array.type) or len(set(texts)) == len(texts):
            return codes, texts
    frame = pd.DataFrame({"value": pd.Series(dictionary.to_pylist(), dtype=object)})
    texts = coerce_features(frame, FeatureSpec("", [], ["value"]))["value"].tolist()
    # two dictionary entries may share a text (1 and 1.0): map them to one index
    unique = list(dict.fromkeys(t for t in texts if t is not None))
    position = {text: i for i, text in enumerate(unique)}
    remap = np.array([position.get(t, -1) if t is not None else -1 for t in texts] + [-1])
    return remap[codes], unique
