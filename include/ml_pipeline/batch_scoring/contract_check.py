"""The input checked against the pinned version's input contract (`registry/contract.py`),
before any row is scored.

Whole input (`check_input`, from each file's schema alone): every contract column must be
there (else refused, naming the column and the file), with a type of its kind: a
`numeric` column must hold numbers (integers, floats, decimals, booleans); a
`categorical` column text, or numbers when the categories seen in training are numbers
(refused otherwise, as a retyped column). Columns the contract does not name are passed
through: not refused, listed in the manifest, and copied to the output when named as key
columns.

Per row (`reject_reasons`, on each chunk): a row is not scored, but written to the rejects
file with its reason, when a column that must have a value has none (the contract's
non-nullable columns and the `non_null_columns` Param) or, with `strict_categories`, when a
categorical value was never seen in training.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from include.ml_pipeline.errors import BatchInputError

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

    from include.ml_pipeline.batch_scoring.source import InputFile

#: Key columns found when the `key_columns` Param is empty: `id`, `*_id`, `id_*`, `*_uuid`,
#: `*_key` (any case), and camelCase `customerId`.
ID_LIKE = re.compile(r"(^|[_\-\s])(id|uuid|guid|key)$|^(id|uuid)[_\-\s]|(?-i:[a-z]I[dD])$", re.I)
#: The key written when the input has no key column: the row's number in its file.
ROW_NUMBER = "row_number"
SOURCE_FILE = "source_file"


@dataclass(frozen=True)
class InputCheck:
    """What the check found: the model's columns (numeric, categorical), the extra columns
    passed through, the key columns written with each prediction, and the row rules."""

    numeric: list[str]
    categorical: list[str]
    extra_columns: list[str]
    key_columns: list[str]
    non_null_columns: list[str]
    strict_categories: dict[str, list[str]] = field(default_factory=dict)
    files_checked: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InputCheck:
        return cls(**data)


def _is_number_type(kind: pa.DataType) -> bool:
    import pyarrow as pa

    return (
        pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_decimal(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_null(kind)
    )


def _is_text_type(kind: pa.DataType) -> bool:
    import pyarrow as pa

    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind)


def _numbers(values: list[str]) -> bool:
    try:
        [float(v) for v in values]
    except ValueError:
        return False
    return True


def column_problem(column: dict[str, Any], kind: pa.DataType) -> str | None:
    """Why an input column of Arrow type `kind` cannot feed the contract's `column`, or
    None when it can."""
    name = column["name"]
    if column["kind"] == "numeric":
        if _is_number_type(kind):
            return None
        return (
            f"column {name!r} is numeric in the contract but {kind} here: send numbers "
            "(missing values as empty/null)"
        )
    if _is_text_type(kind):
        return None
    if _is_number_type(kind) and _numbers(column.get("categories") or []):
        return None
    return f"column {name!r} is categorical (text) in the contract but {kind} here: send it as text"


def key_columns_for(names: list[str], requested: list[str] | None) -> list[str]:
    """The key columns written with each prediction: `requested` (each must be an input
    column), else the id-like columns of `names`; empty when there are none (then the
    row number is the key)."""
    if requested:
        missing = [c for c in requested if c not in names]
        if missing:
            raise BatchInputError(
                f"key_columns {missing} are not columns of the input (it has "
                f"{', '.join(names)}); name existing columns or leave key_columns empty"
            )
        return list(requested)
    return [c for c in names if ID_LIKE.search(c)]


def check_input(
    schemas: list[tuple[InputFile, pa.Schema]],
    contract: dict[str, Any],
    *,
    key_columns: list[str] | None = None,
    non_null_columns: list[str] | None = None,
    strict_categories: bool = False,
) -> InputCheck:
    """Check every file's schema against `contract`; raise `BatchInputError` listing each
    missing or retyped column with the file it is about, else return the `InputCheck`."""
    version = contract.get("version", "?")
    columns = contract.get("columns") or []
    problems: list[str] = []
    all_names: list[str] = []
    for file, schema in schemas:
        names = list(schema.names)
        for name in names:
            if name not in all_names:
                all_names.append(name)
        for column in columns:
            if column["name"] not in names:
                problems.append(
                    f"{file.name}: column {column['name']!r} ({column['kind']}) is missing; "
                    f"v{version} of {contract.get('model_name', 'the model')} needs it"
                )
                continue
            problem = column_problem(column, schema.field(column["name"]).type)
            if problem:
                problems.append(f"{file.name}: {problem}")
    if problems:
        raise BatchInputError(
            f"the input does not meet the input contract of "
            f"{contract.get('model_name', 'the model')} v{version} (nothing was scored): "
            + "; ".join(problems)
        )
    features = {c["name"] for c in columns}
    non_null = [c["name"] for c in columns if c.get("nullable") is False]
    for name in non_null_columns or []:
        if name not in all_names:
            raise BatchInputError(
                f"non_null_columns names {name!r}, which is not a column of the input"
            )
        if name not in non_null:
            non_null.append(name)
    strict: dict[str, list[str]] = {}
    if strict_categories:
        for column in columns:
            if column["kind"] == "categorical" and not column.get("categories_truncated"):
                strict[column["name"]] = list(column.get("categories") or [])
    return InputCheck(
        numeric=[c["name"] for c in columns if c["kind"] == "numeric"],
        categorical=[c["name"] for c in columns if c["kind"] == "categorical"],
        extra_columns=[n for n in all_names if n not in features],
        key_columns=key_columns_for(all_names, key_columns),
        non_null_columns=non_null,
        strict_categories=strict,
        files_checked=len(schemas),
    )


def reject_reasons(
    batch: pa.RecordBatch | pa.Table, check: InputCheck
) -> tuple[np.ndarray, list[str]]:
    """`(refused, reasons)`: a boolean mask of the rows of `batch` that cannot be scored,
    and, for those rows in order, why (the first rule each breaks)."""
    from include.ml_pipeline.batch_scoring.columns import category_codes

    refused = np.zeros(batch.num_rows, dtype=bool)
    why: dict[int, str] = {}
    for name in check.non_null_columns:
        missing = np.asarray(batch.column(name).is_null(nan_is_null=True))
        for i in np.flatnonzero(missing & ~refused).tolist():
            why[i] = f"missing value in required column {name!r}"
        refused |= missing
    for name, seen in check.strict_categories.items():
        codes, texts = category_codes(batch.column(name))
        known = set(seen)
        unseen = np.array([t not in known for t in texts] + [False])[codes]
        for i in np.flatnonzero(unseen & ~refused).tolist():
            why[i] = f"category {texts[codes[i]]!r} of column {name!r} never seen in training"
        refused |= unseen
    return refused, [why[i] for i in np.flatnonzero(refused).tolist()]
