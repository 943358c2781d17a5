"""The bad-data corpus: awkward training files built from the sample generator, each with
the outcome it must have at the door (load, validate, preprocess, split on a DuckDB file,
with the DAG's default Params as `make run DATA=...` uses them).

Each case is either HANDLED (it loads and validates, with or without warnings, and the
features come out with the right kinds) or REFUSED by a named rule, with a message of
ours that names the file -- never a raw engine error, and always a `DataError` (the step
layer fails such a task at once, without retries).

`python -m tests.data_quality.test_bad_data_corpus` prints the table of cases and outcomes.
"""

from __future__ import annotations

import gzip
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from include.ml_pipeline.data_preparation import ingest, preprocess, split, validate, warehouse
from include.ml_pipeline.data_preparation.sample_data import (
    CATEGORICAL_COLUMNS,
    NUMERIC_COLUMNS,
    generate_churn_frame,
)
from include.ml_pipeline.errors import (
    DataError,
    DataSourceError,
    DataValidationError,
)
from include.ml_pipeline.features import FeatureSpec
from tests.support.models import titanic_passengers as _titanic

ROWS = 600
TARGET = "churn"
#: Fragments of DuckDB's own messages that must never reach a user.
ENGINE_WORDING = (
    "Invalid Input Error",
    "Possible fixes",
    "Possible Solution",
    "sniffing",
    "null_padding",
    "Binder Error",
    "Conversion Error",
    "Parser Error",
)


def default_params() -> dict[str, Any]:
    """The deployment DAG's Param defaults, as `make run DATA=file` overrides them."""
    from include.ml_pipeline.orchestration.params import deployment_params

    params = {name: p.value for name, p in deployment_params().items()}
    params.update(required_columns=[], numeric_columns=[], value_ranges={}, target=TARGET)
    return params


def frame(rows: int = ROWS, seed: int = 7) -> pd.DataFrame:
    return generate_churn_frame(rows, seed=seed)


def csv(tmp: Path, name: str, data: pd.DataFrame, **kwargs) -> Path:
    path = tmp / name
    data.to_csv(path, index=False, **kwargs)
    return path


def text(tmp: Path, name: str, content: str | bytes) -> Path:
    path = tmp / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def sample_text(rows: int = ROWS) -> str:
    return frame(rows).to_csv(index=False)


@dataclass
class Outcome:
    """What the door did with one file."""

    refused: bool
    rules: list[str] = field(default_factory=list)
    message: str = ""
    error: BaseException | None = None
    report: Any = None
    prepared: Any = None
    spec: FeatureSpec | None = None
    loaded: Any = None
    split: Any = None

    @property
    def summary(self) -> str:
        if self.refused:
            return "refused: " + ", ".join(self.rules)
        notes = f", {len(self.report.warnings)} warning(s)" if self.report.warnings else ""
        return (
            f"handled: {len(self.spec.numeric)} numeric, {len(self.spec.categorical)} "
            f"categorical, label {self.prepared.target_type}{notes}"
        )


def run_door(path: Path, work: Path, **overrides: Any) -> Outcome:
    """load -> validate -> preprocess -> split, as the four preparation tasks do."""
    params = {**default_params(), **overrides}
    with warehouse.task_warehouse() as con:
        try:
            loaded = ingest.load_into_table(con, str(path), "raw__t")
            report = validate.validate_table(
                con,
                "raw__t",
                validate.ValidationRules.from_params(params),
                str(path),
                load_warnings=loaded.warnings,
                file_format=loaded.file_format,
            )
            prepared = preprocess.preprocess_table(
                con,
                "raw__t",
                "clean__t",
                TARGET,
                report.kinds,
                exclude_columns=params["exclude_columns"],
                drop_duplicates=params["drop_duplicates"],
                problem_type=report.problem_type,
            )
            spec = prepared.feature_spec
            result = split.split_table(
                con,
                "clean__t",
                "split__t",
                spec,
                work / "splits",
                test_size=params["test_size"],
                validation_size=params["validation_size"],
                seed=params["seed"],
            )
        except DataValidationError as exc:
            return Outcome(True, exc.rules, str(exc), exc)
        except DataSourceError as exc:
            return Outcome(True, [exc.rule or "source"], str(exc), exc)
        except Exception as exc:  # anything else is a bug of the door: reported as such
            return Outcome(True, [f"UNEXPECTED {type(exc).__name__}"], str(exc), exc)
    return Outcome(False, report=report, prepared=prepared, spec=spec, loaded=loaded, split=result)


# --------------------------------------------------------------------------- builders


def _labels_by_case(tmp):
    f = frame()
    rng = np.random.default_rng(1)
    f[TARGET] = [v.capitalize() if rng.random() < 0.4 else v for v in f[TARGET]]
    return csv(tmp, "labels_case.csv", f)


def _labels_spacing(tmp):
    f = frame()
    f[TARGET] = np.where(f[TARGET] == "yes", "will churn", "will stay")
    f.loc[f.index[:40], TARGET] = f.loc[f.index[:40], TARGET].str.replace(" ", "  ")
    return csv(tmp, "labels_spacing.csv", f)


def _text_in_numeric(share: float, name: str):
    def build(tmp):
        f = frame()
        f["age"] = f["age"].astype(object)
        rows = np.random.default_rng(2).random(len(f)) < share
        f.loc[rows, "age"] = "unknown age"
        return csv(tmp, name, f)

    return build


def _set(column: str, index: int, value: Any, name: str):
    def build(tmp):
        f = frame()
        f[column] = f[column].astype(object)
        f.loc[index, column] = value
        return csv(tmp, name, f)

    return build


def _header_less(tmp):
    return csv(tmp, "no_header.csv", frame(), header=False)


def _duplicate_header(tmp):
    body = sample_text().splitlines()
    body[0] = body[0].replace("support_tickets", "age")
    return text(tmp, "dup_header.csv", "\n".join(body) + "\n")


def _duplicate_header_case(tmp):
    body = sample_text().splitlines()
    body[0] = body[0].replace("support_tickets", "AGE")
    return text(tmp, "dup_header_case.csv", "\n".join(body) + "\n")


def _ragged(fewer: bool):
    def build(tmp):
        lines = sample_text().splitlines()
        line = lines[300].split(",")
        lines[300] = ",".join(line[:-2] if fewer else [*line, "extra"])
        return text(tmp, f"ragged_{'short' if fewer else 'long'}.csv", "\n".join(lines) + "\n")

    return build


def _unterminated_quote(tmp):
    lines = sample_text().splitlines()
    lines[200] = lines[200].replace("north", '"north', 1).replace("south", '"south', 1)
    lines[200] = lines[200].replace("east", '"east', 1).replace("west", '"west', 1)
    return text(tmp, "unterminated.csv", "\n".join(lines) + "\n")


def _quoted_newlines(tmp):
    f = frame()
    f["comment"] = np.where(np.arange(len(f)) % 3 == 0, "line one\nline two, with a comma", "short")
    return csv(tmp, "quoted_newlines.csv", f)


def _latin1(tmp):
    f = frame()
    f["region"] = f["region"].map(
        {"north": "Norté", "south": "São Sul", "east": "Köln", "west": "Oeste"}
    )
    path = tmp / "latin1.csv"
    path.write_bytes(f.to_csv(index=False).encode("latin-1"))
    return path


def _utf16(tmp):
    path = tmp / "utf16.csv"
    path.write_bytes(sample_text().encode("utf-16"))
    return path


def _bom(tmp):
    path = tmp / "bom.csv"
    path.write_bytes(sample_text().encode("utf-8-sig"))
    return path


def _crlf(tmp):
    path = tmp / "crlf.csv"
    path.write_bytes(sample_text().replace("\n", "\r\n").encode())
    return path


def _gzip(name: str):
    def build(tmp):
        path = tmp / name
        with gzip.open(path, "wb") as handle:
            handle.write(sample_text().encode())
        return path

    return build


def _corrupt_gzip(tmp):
    data = gzip.compress(sample_text().encode())
    return text(tmp, "corrupt.csv.gz", data[: len(data) // 2])


def _delimited(sep: str, name: str):
    def build(tmp):
        return csv(tmp, name, frame(), sep=sep)

    return build


def _parquet(tmp):
    path = tmp / "sample.parquet"
    frame().to_parquet(path, index=False)
    return path


def _truncated_parquet(tmp):
    path = _parquet(tmp)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _missing_tokens(tmp):
    f = frame()
    for column, token in (("age", "NA"), ("tenure_months", "NaN"), ("monthly_charges", "?")):
        f[column] = f[column].astype(object)
        f.loc[f.index[::17], column] = token
    return csv(tmp, "missing_tokens.csv", f)


def _repeated_rows_no_id(tmp):
    f = frame()
    return csv(tmp, "repeats.csv", pd.concat([f, f.iloc[:150]], ignore_index=True))


def _repeated_rows_with_id(tmp):
    f = frame()
    f.insert(0, "customer_id", [f"C{i:05d}" for i in range(len(f))])
    return csv(tmp, "repeats_id.csv", pd.concat([f, f.iloc[:50]], ignore_index=True))


def titanic_passengers() -> pd.DataFrame:
    return _titanic("age")


def _all_categorical(tmp):
    return csv(tmp, "titanic.csv", titanic_passengers().rename(columns={"survived": TARGET}))


def _small(rows: int, name: str):
    def build(tmp):
        f = frame(rows, seed=3)
        return csv(tmp, name, f)

    return build


def _label_variant(name: str, mapping: Callable[[pd.Series], Any], parquet: bool = False):
    def build(tmp):
        f = frame()
        f[TARGET] = mapping(f[TARGET])
        if parquet:
            path = tmp / name
            f.to_parquet(path, index=False)
            return path
        return csv(tmp, name, f)

    return build


def _with_column(name: str, make: Callable[[pd.DataFrame], Any], file: str):
    def build(tmp):
        f = frame()
        f[name] = make(f)
        return csv(tmp, file, f)

    return build


def _pandas_index(tmp):
    path = tmp / "pandas_index.csv"
    frame().to_csv(path)  # index written, header cell empty
    return path


def _r_style_index(tmp):
    f = frame()
    f.insert(0, "Unnamed: 0", range(1, len(f) + 1))
    return csv(tmp, "unnamed_index.csv", f)


def _trailing_delimiter(tmp):
    lines = sample_text().splitlines()
    return text(tmp, "trailing_comma.csv", "\n".join(f"{ln}," for ln in lines) + "\n")


def _leading_blank_lines(tmp):
    return text(tmp, "leading_blank.csv", "\n\n" + sample_text())


def _odd_names(tmp):
    f = frame().rename(
        columns={"monthly_charges": "monthly charges ($)", "region": 'region "zone"', "age": "âge"}
    )
    return csv(tmp, "odd_names.csv", f)


def _padded_names(tmp):
    lines = sample_text().splitlines()
    lines[0] = ", ".join(f" {n} " for n in lines[0].split(","))
    return text(tmp, "padded_names.csv", "\n".join(lines) + "\n")


def _nested_parquet(column: str):
    def build(tmp):
        f = frame()
        f[column] = [[v] for v in f[column]]
        path = tmp / f"nested_{column}.parquet"
        f.to_parquet(path, index=False)
        return path

    return build


def _only_id_and_target(tmp):
    f = frame()[[TARGET]]
    f.insert(0, "order_id", [f"O{i:06d}" for i in range(len(f))])
    return csv(tmp, "only_id.csv", f)


def _regression_target(tmp):
    f = frame()
    f[TARGET] = np.random.default_rng(0).normal(size=len(f)).round(4)
    return csv(tmp, "regression.csv", f)


def _many_integer_classes(tmp):
    f = frame()
    f[TARGET] = np.arange(len(f)) % 60
    return csv(tmp, "codes.csv", f)


def _is_regression(out):
    assert out.report.problem_type == "regression", out.report
    assert "fractional parts" in out.report.problem_reason
    assert out.spec.problem_type == "regression"


# --------------------------------------------------------------------------- the cases


@dataclass
class Case:
    name: str
    what: str
    build: Callable[[Path], Path]
    refused_by: str | None = None  # the rule; None: handled
    numeric: set[str] = field(default_factory=set)  # must be numeric features
    categorical: set[str] = field(default_factory=set)  # must be categorical features
    excluded: set[str] = field(default_factory=set)  # must be left out
    warns: tuple[str, ...] = ()  # fragments of the warnings
    label_type: str | None = None
    check: Callable[[Outcome], None] | None = None
    params: dict[str, Any] = field(default_factory=dict)


def _rows_kept(n: int):
    def check(out: Outcome):
        assert out.prepared.rows_out == n, out.prepared

    return check


def _train_labels(expected: set):
    def check(out: Outcome):
        labels = set(pd.read_parquet(out.split.uris["train"])[TARGET].tolist())
        assert labels == expected, labels

    return check


def _value_in(column: str, value: str):
    def check(out: Outcome):
        values = set(pd.read_parquet(out.split.uris["train"])[column].dropna().tolist())
        assert value in values, sorted(values)[:10]

    return check


SAMPLE_NUMERIC = set(NUMERIC_COLUMNS)
SAMPLE_CATEGORICAL = set(CATEGORICAL_COLUMNS)

CASES = [
    # ---- refused at the door
    Case("empty_file", "a 0-byte file", lambda t: text(t, "empty.csv", ""), "empty_file"),
    Case(
        "blank_lines_only",
        "only blank lines",
        lambda t: text(t, "blank.csv", "\n\n  \n"),
        "empty_file",
    ),
    Case(
        "header_only",
        "a header and no rows",
        lambda t: text(t, "header.csv", sample_text().splitlines()[0] + "\n"),
        "min_rows",
    ),
    Case("too_few_rows", "60 rows (min_rows 100)", _small(60, "tiny.csv"), "min_rows"),
    Case(
        "no_target_column",
        "the target column is missing",
        lambda t: csv(t, "no_target.csv", frame().drop(columns=[TARGET])),
        "required_column",
    ),
    Case(
        "header_less",
        "no header line: the first data row taken as names",
        _header_less,
        "header_looks_like_data",
    ),
    Case("duplicate_header", "two columns named 'age'", _duplicate_header, "duplicate_column"),
    Case("duplicate_header_case", "'age' and 'AGE'", _duplicate_header_case, "duplicate_column"),
    Case("ragged_short_row", "one row with two fields too few", _ragged(True), "ragged_row"),
    Case("ragged_long_row", "one row with an extra field", _ragged(False), "ragged_row"),
    Case(
        "unterminated_quote", "a quote that never closes", _unterminated_quote, "unterminated_quote"
    ),
    Case(
        "excel_workbook",
        "an .xlsx (zip) saved as .csv",
        lambda t: text(t, "book.csv", b"PK\x03\x04" + b"\x00" * 200),
        "file_format",
    ),
    Case(
        "binary_garbage",
        "random bytes",
        lambda t: text(t, "garbage.csv", bytes(range(256)) * 40),
        "file_format",
    ),
    Case("corrupt_gzip", "a gzip file cut in half", _corrupt_gzip, "file_format"),
    Case(
        "single_class",
        "every label is 'no'",
        _label_variant("one_class.csv", lambda s: "no"),
        "min_classes",
    ),
    Case(
        "labels_differ_by_case",
        "'Yes'/'yes' and 'No'/'no' as four labels",
        _labels_by_case,
        "label_spelling",
    ),
    Case(
        "labels_differ_by_spacing",
        "'will churn' and 'will  churn'",
        _labels_spacing,
        "label_spelling",
    ),
    Case(
        "target_copy",
        "a copy of the target as a feature",
        _with_column("churn_copy", lambda f: f[TARGET], "leak_copy.csv"),
        "target_leakage",
    ),
    Case(
        "target_recoded",
        "the target recoded as 0/1 in a numeric column",
        _with_column("churned_flag", lambda f: (f[TARGET] == "yes").astype(int), "leak_flag.csv"),
        "target_leakage",
    ),
    Case(
        "target_threshold",
        "a number that is the label's threshold (after-the-fact score)",
        _with_column(
            "cancel_score",
            lambda f: (
                np.where(f[TARGET] == "yes", 0.6, 0.1)
                + np.random.default_rng(5).random(len(f)) * 0.3
            ),
            "leak_score.csv",
        ),
        "target_leakage",
    ),
    Case(
        "inf_strings",
        "'inf' in a numeric column",
        _set("monthly_charges", 40, "inf", "inf.csv"),
        "finite_numbers",
    ),
    Case(
        "minus_infinity",
        "'-Infinity' in a numeric column",
        _set("total_charges", 41, "-Infinity", "minus_inf.csv"),
        "finite_numbers",
    ),
    Case(
        "overflow_1e400",
        "'1e400' (overflows a float64)",
        _set("age", 42, "1e400", "overflow.csv"),
        "finite_numbers",
    ),
    Case(
        "huge_1e200",
        "1e200 (its square overflows in scaling)",
        _set("age", 43, "1e200", "huge.csv"),
        "finite_numbers",
    ),
    Case(
        "text_in_numeric_10pct",
        "10% text in 'age'",
        _text_in_numeric(0.10, "age_text.csv"),
        "numeric_parseable",
    ),
    Case(
        "one_bad_number",
        "one 'forty-two' in 'age'",
        _set("age", 41, "forty-two", "bad_number.csv"),
        "numeric_parseable",
    ),
    Case(
        "missing_labels",
        "5% of rows without a label",
        _label_variant("no_labels.csv", lambda s: s.where(np.arange(len(s)) % 20 != 0)),
        "target_nulls",
    ),
    Case(
        "rare_class",
        "a third class with 3 rows",
        _label_variant("rare.csv", lambda s: s.where(np.arange(len(s)) >= 3, "maybe")),
        "min_class_count",
    ),
    # A continuous target was refused by max_classes until regression existed: now it is a
    # regression problem (the problem type inferred, the label a number).
    Case(
        "regression_target",
        "a continuous target",
        _regression_target,
        label_type="DOUBLE",
        check=lambda out: _is_regression(out),
    ),
    Case(
        "integer_codes_over_50",
        "a whole-number label with 60 values, forced to be classes",
        _many_integer_classes,
        "max_classes",
        params={"problem_type": "multiclass"},
    ),
    Case(
        "mostly_empty_column",
        "a feature 70% empty",
        _with_column(
            "notes",
            lambda f: np.where(
                np.arange(len(f)) % 10 < 7, None, np.where(np.arange(len(f)) % 2, "vip", "new")
            ),
            "sparse.csv",
        ),
        "max_null_fraction",
    ),
    Case("truncated_parquet", "a Parquet file cut short", _truncated_parquet, "unreadable_parquet"),
    Case(
        "nested_label",
        "Parquet labels that are lists (['no'])",
        _nested_parquet(TARGET),
        "target_type",
    ),
    Case(
        "nested_feature",
        "a Parquet feature holding lists",
        _nested_parquet("region"),
        "nested_column",
    ),
    Case(
        "only_an_identifier", "the only feature is an order id", _only_id_and_target, "has_features"
    ),
    Case(
        "duplicates_over_explicit_limit",
        "150 repeated rows in 750 (20%) with max_duplicate_fraction 0.05",
        _repeated_rows_no_id,
        "max_duplicate_fraction",
        params={"max_duplicate_fraction": 0.05},
    ),
    # ---- handled
    Case(
        "clean_sample",
        "the sample data as generated",
        lambda t: csv(t, "sample.csv", frame()),
        numeric=SAMPLE_NUMERIC,
        categorical=SAMPLE_CATEGORICAL,
        label_type="VARCHAR",
    ),
    Case(
        "quoted_newlines",
        "a text column with quoted newlines and commas",
        _quoted_newlines,
        categorical={"comment"},
        check=_rows_kept(ROWS),
    ),
    Case(
        "latin1",
        "Latin-1 encoded text",
        _latin1,
        categorical={"region"},
        warns=("read as Latin-1",),
        check=_value_in("region", "São Sul"),
    ),
    Case("utf16", "UTF-16 with a byte-order mark", _utf16, numeric=SAMPLE_NUMERIC),
    Case("utf8_bom", "a UTF-8 byte-order mark", _bom, numeric={"tenure_months"}),
    Case("crlf", "Windows line endings", _crlf, numeric=SAMPLE_NUMERIC, check=_rows_kept(ROWS)),
    Case("gzip", "gzip-compressed .csv.gz", _gzip("sample.csv.gz"), numeric=SAMPLE_NUMERIC),
    Case(
        "gzip_unnamed",
        "gzip-compressed, named .csv",
        _gzip("compressed.csv"),
        numeric=SAMPLE_NUMERIC,
    ),
    Case(
        "semicolons",
        "semicolon-separated",
        _delimited(";", "semicolon.csv"),
        numeric=SAMPLE_NUMERIC,
    ),
    Case("tabs", "tab-separated .tsv", _delimited("\t", "tabs.tsv"), numeric=SAMPLE_NUMERIC),
    Case("pipes", "pipe-separated", _delimited("|", "pipes.txt"), numeric=SAMPLE_NUMERIC),
    Case("parquet", "Parquet", _parquet, numeric=SAMPLE_NUMERIC, categorical=SAMPLE_CATEGORICAL),
    Case(
        "csv_named_parquet",
        "a CSV saved as .parquet: read by its content",
        lambda t: csv(t, "really_csv.parquet", frame()),
        numeric=SAMPLE_NUMERIC,
    ),
    Case(
        "missing_tokens",
        "'NA', 'NaN' and '?' in numeric columns",
        _missing_tokens,
        numeric={"age", "tenure_months", "monthly_charges"},
        warns=("'NA'", "'NaN'", "'?'"),
    ),
    Case(
        "repeated_rows",
        "150 exact repeats, no identifier: kept",
        _repeated_rows_no_id,
        warns=("repeat another row exactly: they are kept",),
        check=_rows_kept(ROWS + 150),
    ),
    Case(
        "repeated_records_with_id",
        "50 records exported twice (same customer_id): dropped",
        _repeated_rows_with_id,
        excluded={"customer_id"},
        warns=("identifier 'customer_id' included",),
        check=_rows_kept(ROWS),
    ),
    Case(
        "small_table",
        "120 rows",
        _small(120, "small.csv"),
        numeric=SAMPLE_NUMERIC,
        warns=("only 120 rows",),
    ),
    Case(
        "all_categorical_repeats",
        "Titanic passengers: 3 categorical features, 20 distinct rows in 1,316",
        _all_categorical,
        categorical={"class", "sex", "age"},
        warns=("they are kept",),
        check=_rows_kept(1316),
    ),
    Case(
        "boolean_labels",
        "True/False labels",
        _label_variant("bool.csv", lambda s: s == "yes"),
        label_type="BOOLEAN",
        check=_train_labels({True, False}),
    ),
    Case(
        "boolean_labels_lowercase",
        "true/false labels",
        _label_variant("bool_lower.csv", lambda s: np.where(s == "yes", "true", "false")),
        label_type="BOOLEAN",
        check=_train_labels({True, False}),
    ),
    Case(
        "boolean_labels_parquet",
        "a Parquet boolean target",
        _label_variant("bool.parquet", lambda s: s == "yes", parquet=True),
        label_type="BOOLEAN",
        check=_train_labels({True, False}),
    ),
    Case(
        "integer_labels",
        "0/1 labels",
        _label_variant("int.csv", lambda s: (s == "yes").astype(int)),
        label_type="BIGINT",
        check=_train_labels({0, 1}),
    ),
    Case(
        "float_integer_labels",
        "0.0/1.0 labels",
        _label_variant("float.csv", lambda s: (s == "yes").astype(float)),
        label_type="BIGINT",
        check=_train_labels({0, 1}),
    ),
    Case(
        "decimal_labels",
        "0.5/1.5 labels: kept as text, not rounded",
        _label_variant("decimal.csv", lambda s: np.where(s == "yes", "1.5", "0.5")),
        label_type="VARCHAR",
        warns=("decimal numbers",),
        check=_train_labels({"0.5", "1.5"}),
    ),
    Case(
        "list_like_text_labels",
        "'[no]'/'[yes]' text labels: kept as text",
        _label_variant("listy.csv", lambda s: "[" + s + "]"),
        label_type="VARCHAR",
        warns=("look like lists",),
        check=_train_labels({"[no]", "[yes]"}),
    ),
    Case(
        "padded_labels",
        "' yes' and 'yes ': trimmed to two labels",
        _label_variant("padded.csv", lambda s: np.where(np.arange(len(s)) % 2, " " + s, s + " ")),
        check=_train_labels({"no", "yes"}),
    ),
    Case(
        "constant_column",
        "a column with one value",
        _with_column("country", lambda f: "ES", "constant.csv"),
        excluded={"country"},
        warns=("'country' has the same value in every row",),
    ),
    Case(
        "extra_random_column",
        "an extra random numeric column (the contract gate names it)",
        _with_column("noise", lambda f: np.random.default_rng(9).normal(size=len(f)), "noise.csv"),
        numeric={"noise"},
    ),
    Case(
        "text_identifier",
        "an order id column",
        _with_column("order_id", lambda f: [f"ORD-{i:06d}" for i in range(len(f))], "order_id.csv"),
        excluded={"order_id"},
        warns=("'order_id' looks like an identifier",),
    ),
    Case(
        "pandas_index",
        "a pandas index written with an empty header cell",
        _pandas_index,
        excluded={"column0"},
        warns=("no name in the header", "'column0' looks like an id"),
    ),
    Case(
        "unnamed_index",
        "an 'Unnamed: 0' row-number column",
        _r_style_index,
        excluded={"Unnamed: 0"},
        warns=("'Unnamed: 0' looks like an identifier",),
    ),
    Case(
        "trailing_delimiter",
        "a comma at the end of every line",
        _trailing_delimiter,
        excluded={f"column{len(NUMERIC_COLUMNS) + len(CATEGORICAL_COLUMNS) + 1}"},
        warns=("has no value",),
    ),
    Case(
        "leading_blank_lines",
        "blank lines before the header",
        _leading_blank_lines,
        numeric=SAMPLE_NUMERIC,
        check=_rows_kept(ROWS),
    ),
    Case(
        "odd_column_names",
        "names with spaces, quotes and accents",
        _odd_names,
        numeric={"monthly charges ($)", "âge"},
        categorical={'region "zone"'},
    ),
    Case(
        "padded_header_names",
        "' age ' style header names: trimmed",
        _padded_names,
        numeric=SAMPLE_NUMERIC,
    ),
    Case(
        "mostly_text_column",
        "a column that is 40% numbers, 60% text: categorical",
        _with_column(
            "plan",
            lambda f: np.where(
                np.arange(len(f)) % 5 < 2,
                "12",
                np.where(np.arange(len(f)) % 5 < 4, "gold", "basic"),
            ),
            "plan.csv",
        ),
        categorical={"plan"},
    ),
    Case(
        "leaky_column_allowed",
        "a copy of the target with leakage_threshold null",
        _with_column("churn_copy", lambda f: f[TARGET], "leak_allowed.csv"),
        categorical={"churn_copy"},
        params={"leakage_threshold": None},
    ),
    Case(
        "declared_categorical_codes",
        "integer codes declared in categorical_columns",
        _with_column("plan_code", lambda f: np.arange(len(f)) % 4, "codes.csv"),
        categorical={"plan_code"},
        params={"categorical_columns": ["plan_code"]},
    ),
]


def test_the_corpus_is_big_enough():
    assert len(CASES) >= 40
    assert len({c.name for c in CASES}) == len(CASES)
    assert sum(c.refused_by is not None for c in CASES) >= 20
    assert sum(c.refused_by is None for c in CASES) >= 20


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(case: Case, tmp_path):
    path = case.build(tmp_path)
    out = run_door(path, tmp_path, **case.params)
    if case.refused_by:
        assert out.refused, f"{case.name}: expected refusal by {case.refused_by}, got {out.summary}"
        assert isinstance(out.error, DataError), out.error
        assert case.refused_by in out.rules, (case.name, out.rules, out.message)
        assert str(path) in out.message or path.name in out.message
        assert not any(word in out.message for word in ENGINE_WORDING), out.message
        return
    assert not out.refused, f"{case.name}: expected handled, got {out.rules}: {out.message}"
    spec = out.spec
    assert case.numeric <= set(spec.numeric), (spec.numeric, case.numeric)
    assert case.categorical <= set(spec.categorical), (spec.categorical, case.categorical)
    assert case.excluded <= set(out.prepared.excluded_columns), out.prepared.excluded_columns
    assert not case.excluded & set(spec.columns)
    text = " | ".join(out.report.warnings)
    for fragment in case.warns:
        assert fragment in text, (fragment, out.report.warnings)
    if case.label_type:
        assert out.prepared.target_type == case.label_type
    if case.check:
        case.check(out)
    assert sum(out.split.rows.values()) == out.prepared.rows_out


def corpus_table() -> list[tuple[str, str, str, str]]:
    """(case, what, expected, actual) for every case, built in a temporary folder."""
    rows = []
    for case in CASES:
        tmp = Path(tempfile.mkdtemp(prefix="corpus-"))
        try:
            out = run_door(case.build(tmp), tmp, **case.params)
            expected = f"refused: {case.refused_by}" if case.refused_by else "handled"
            first = (
                out.message.splitlines()[-1].strip()
                if out.refused
                else "; ".join(out.report.warnings)
            )
            rows.append((case.name, case.what, expected, f"{out.summary} -- {first}"))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return rows


if __name__ == "__main__":  # pragma: no cover
    from devtools import airflow_env

    airflow_env.configure()  # the Params are Airflow Params
    for name, what, expected, actual in corpus_table():
        print(f"| {name} | {what} | {expected} | {actual} |")
