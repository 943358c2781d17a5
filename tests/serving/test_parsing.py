"""Request parsing (no server): every scoring-protocol shape gives the same `Batch`,
columns are matched by name whatever their order, and each rule broken gets its 4xx
naming the column."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from include.ml_pipeline.serving.parsing import _LITERAL_MISSES_MAX, FeatureParser, RequestError

NUMERIC = ["age", "income"]
CATEGORICAL = ["plan", "region"]
RECORDS = [
    {"region": "north", "age": 41, "plan": "basic", "income": 1200.5},
    {"region": None, "age": None, "plan": "pro", "income": 0.25},
    {"region": "east", "age": 19.0, "plan": None, "income": -3},
]


# the categories a model's encoders know ("east" is not one of them: an unseen category)
KNOWN = {"plan": ["basic", "pro"], "region": ["north", "south"]}


@pytest.fixture(params=["plain", "known_categories"])
def parser(request):
    """The parser without and with the model's known categories (`parser_for`): every
    rule holds with both."""
    known = KNOWN if request.param == "known_categories" else None
    return FeatureParser(NUMERIC, CATEGORICAL, max_rows=10, categories=known)


def _split(records, columns):
    return {"columns": columns, "data": [[r[c] for c in columns] for r in records]}


def _assert_expected(batch):
    assert batch.numeric_columns == ("age", "income")
    assert batch.categorical_columns == ("plan", "region")
    np.testing.assert_array_equal(
        batch.numeric, np.array([[41.0, 1200.5], [np.nan, 0.25], [19.0, -3.0]])
    )
    assert batch.categorical == (["basic", "pro", None], ["north", None, "east"])
    assert all(type(column) is list for column in batch.categorical)


@pytest.mark.parametrize(
    "shape",
    ["split", "split_reordered", "records", "instances", "inputs_columns", "inputs_records", "csv"],
)
def test_every_shape_gives_the_same_batch(parser, shape):
    columns = ["region", "income", "plan", "age"]  # not the spec's order
    if shape == "csv":
        lines = ["region,income,plan,age", "north,1200.5,basic,41", ",0.25,pro,", "east,-3,,19.0"]
        _assert_expected(parser.parse_csv_body("\n".join(lines).encode()))
        return
    payload = {
        "split": {"dataframe_split": _split(RECORDS, [*NUMERIC, *CATEGORICAL])},
        "split_reordered": {"dataframe_split": _split(RECORDS, columns)},
        "records": {"dataframe_records": RECORDS},
        "instances": {"instances": RECORDS},
        "inputs_columns": {"inputs": {c: [r[c] for r in RECORDS] for c in columns}},
        "inputs_records": {"inputs": RECORDS, "params": {}},
    }[shape]
    _assert_expected(parser.parse_json_body(orjson.dumps(payload)))


def test_a_record_without_a_key_has_a_missing_value(parser):
    records = [
        dict(RECORDS[0]),
        {k: v for k, v in RECORDS[1].items() if k != "region"},
        dict(RECORDS[2]),
    ]
    batch = parser.parse_json_body(orjson.dumps({"dataframe_records": records}))
    assert batch.categorical[1] == ["north", None, "east"]


def test_single_row_split(parser):
    body = orjson.dumps(
        {"dataframe_split": _split(RECORDS[:1], ["plan", "age", "income", "region"])}
    )
    batch = parser.parse_json_body(body)
    np.testing.assert_array_equal(batch.numeric, [[41.0, 1200.5]])
    assert batch.categorical == (["basic"], ["north"])


def _error(call) -> RequestError:
    with pytest.raises(RequestError) as info:
        call()
    return info.value


@pytest.mark.parametrize(
    ("bad_value", "message"),
    [
        (True, "column 'income' must be a number or null; got True"),
        ("12", "column 'income' must be a number or null; got '12'"),
        ([1], "column 'income' must be a number or null; got [1]"),
    ],
)
def test_wrong_numeric_type_names_the_column(parser, bad_value, message):
    records = [dict(RECORDS[0]), dict(RECORDS[1], income=bad_value)]
    for body in (
        orjson.dumps({"dataframe_records": records}),
        orjson.dumps({"dataframe_split": _split(records, [*NUMERIC, *CATEGORICAL])}),
    ):
        error = _error(lambda body=body: parser.parse_json_body(body))
        assert (error.status, error.kind) == (422, "wrong_type")
        assert message in error.message


def test_wrong_categorical_type_names_the_column(parser):
    records = [dict(RECORDS[0], plan=3)]
    error = _error(lambda: parser.parse_json_body(orjson.dumps({"instances": records})))
    assert (error.status, error.kind) == (422, "wrong_type")
    assert "column 'plan' must be a string or null; got 3" in error.message


def test_infinite_csv_value_is_rejected(parser):
    body = b"age,income,plan,region\n41,inf,basic,north\n"
    error = _error(lambda: parser.parse_csv_body(body))
    assert (error.status, error.kind) == (422, "wrong_type")
    assert "column 'income' has a non-finite number" in error.message


def test_huge_integer_is_rejected_not_crashing(parser):
    body = (
        '{"dataframe_split": {"columns": ["age", "income", "plan", "region"], '
        '"data": [[1, ' + "9" * 400 + ', "a", "b"]]}}'
    ).encode()
    error = _error(lambda: parser.parse_json_body(body))
    assert error.status in (400, 422)
    assert "income" in error.message or "JSON" in error.message


def test_ragged_split_rows_are_rejected(parser):
    body = orjson.dumps(
        {
            "dataframe_split": {
                "columns": ["age", "income", "plan", "region"],
                "data": [[1, 2, "a", "b"], [1, 2, "a"]],
            }
        }
    )
    error = _error(lambda: parser.parse_json_body(body))
    assert (error.status, error.kind) == (400, "bad_format")
    assert "row 1" in error.message


@pytest.mark.parametrize("shape", ["split", "records", "instances", "inputs_columns", "csv"])
def test_extra_columns_are_ignored_and_named(parser, shape):
    extra = [dict(r, zeta=1, **{"a b": "x"}) for r in RECORDS]
    columns = ["zeta", *NUMERIC, "a b", *CATEGORICAL]
    if shape == "csv":
        lines = [
            "zeta,age,income,a b,plan,region",
            "1,41,1200.5,x,basic,north",
            "1,,0.25,x,pro,",
            "1,19.0,-3,x,,east",
        ]
        batch = parser.parse_csv_body("\n".join(lines).encode())
    else:
        payload = {
            "split": {"dataframe_split": _split(extra, columns)},
            "records": {"dataframe_records": extra},
            "instances": {"instances": extra},
            "inputs_columns": {"inputs": {c: [r[c] for r in extra] for c in columns}},
        }[shape]
        batch = parser.parse_json_body(orjson.dumps(payload))
    _assert_expected(batch)
    assert batch.ignored_columns == ("a b", "zeta")
    assert batch.raw_split is None  # the log keeps the model's columns only


def test_missing_and_extra_columns_are_both_named(parser):
    records = [{"age": 1, "income": 2, "plan": "a", "surprise": 3}]
    error = _error(lambda: parser.parse_json_body(orjson.dumps({"dataframe_records": records})))
    assert (error.status, error.kind) == (422, "missing_columns")
    assert "missing columns: region" in error.message
    assert "unknown columns: surprise" in error.message


def test_typed_records_must_each_have_every_column(parser):
    records = [dict(RECORDS[0]), {k: v for k, v in RECORDS[1].items() if k != "region"}]
    error = _error(lambda: parser.from_records(records, "records", complete=True))
    assert (error.status, error.kind) == (422, "missing_columns")
    assert "item 1 lacks the columns: region" in error.message
    swapped = [
        dict(RECORDS[0]),
        {**{k: v for k, v in RECORDS[1].items() if k != "plan"}, "other": 1},
    ]  # as many keys, one of them not a feature
    error = _error(lambda: parser.from_records(swapped, "records", complete=True))
    assert "item 1 lacks the columns: plan" in error.message
    assert parser.from_records(swapped, "records").categorical[0] == ["basic", None]


def test_params_must_be_an_object(parser):
    body = orjson.dumps({"dataframe_records": RECORDS, "params": [1]})
    error = _error(lambda: parser.parse_json_body(body))
    assert (error.status, error.kind) == (400, "bad_format")
    assert "'params'" in error.message


def _general(parser, body):
    """What the general path (orjson, checks in Python) makes of `body`."""
    try:
        payload = orjson.loads(body)
        split = payload["dataframe_split"]
        batch = parser.from_split(split["columns"], split["data"])
        return ("ok", batch.numeric.tobytes(), batch.categorical, batch.ignored_columns)
    except Exception as exc:
        return ("refused", type(exc).__name__)


@pytest.mark.parametrize(
    "change",
    [
        "none", "reordered", "extra_column", "int_number", "bool_number", "text_number",
        "number_text", "short_row", "object_row", "null_params", "null_index", "unknown_key",
        "duplicate_column", "indented",
    ],
)  # fmt: skip
def test_split_fast_path_agrees_with_the_general_one(parser, change):
    """msgspec's typed decoding of `dataframe_split` (`split_fast`) gives the general
    path's batch on a valid body, and leaves any other body to it (None), so that its
    errors read as they always did."""
    columns = [*NUMERIC, *CATEGORICAL]
    payload: dict = {"dataframe_split": _split(RECORDS, columns)}
    split, rows = payload["dataframe_split"], payload["dataframe_split"]["data"]
    if change == "reordered":
        payload["dataframe_split"] = _split(RECORDS, ["region", "income", "plan", "age"])
    elif change == "extra_column":
        split["columns"].append("note")
        for row in rows:
            row.append({"any": ["json"]})
    elif change == "int_number":
        rows[0][0] = 41
    elif change in ("bool_number", "text_number", "number_text"):
        rows[1][0 if change != "number_text" else 2] = {
            "bool_number": True,
            "text_number": "41",
            "number_text": 3,
        }[change]
    elif change == "short_row":
        rows[2].pop()
    elif change == "object_row":
        rows[2] = dict(zip(columns, rows[2], strict=True))
    elif change == "null_params":
        payload["params"] = None
    elif change == "null_index":
        split["index"] = None
    elif change == "unknown_key":
        split["orient"] = "split"
    elif change == "duplicate_column":
        split["columns"][1] = "age"
    body = orjson.dumps(payload, option=orjson.OPT_INDENT_2 if change == "indented" else 0)
    general = _general(parser, body)
    valid = change in ("none", "reordered", "extra_column", "int_number", "indented")
    if change == "duplicate_column":  # a rule both paths check after decoding
        with pytest.raises(RequestError, match="repeats columns: age"):
            parser.split_fast(body)
        assert general == ("refused", "RequestError")
        return
    fast = parser.split_fast(body)
    if not valid:
        assert fast is None
        assert general[0] == "refused" or change in ("null_params", "null_index", "unknown_key")
        with pytest.raises(RequestError):
            parser.parse_json_body(body)
        return
    assert fast is not None
    assert ("ok", fast.numeric.tobytes(), fast.categorical, fast.ignored_columns) == general
    assert fast.raw_split == (None if change in ("extra_column", "indented") else body)
    assert all(type(column) is list for column in fast.categorical)


def _body(records, columns) -> bytes:
    return orjson.dumps({"dataframe_split": _split(records, columns)})


def test_known_categories_are_decoded_to_the_models_own_strings():
    """With the encoders' categories, `split_fast` hands the predictor those very string
    objects (their hashes cached: the lookups cost less); any other category is still
    taken, as text, and the batch is the general path's."""
    plan, region = ["basic", "pro"], ["north", "south"]
    parser = FeatureParser(NUMERIC, CATEGORICAL, 10, categories={"plan": plan, "region": region})
    body = _body(
        [*RECORDS[:1], dict(RECORDS[0], plan="pro", region="south")], [*NUMERIC, *CATEGORICAL]
    )
    batch = parser.split_fast(body)
    assert batch is not None
    assert batch.categorical == (["basic", "pro"], ["north", "south"])
    assert batch.categorical[0][0] is plan[0]
    assert batch.categorical[0][1] is plan[1]
    assert batch.categorical[1][1] is region[1]
    assert batch.raw_split == body
    unseen = _body(RECORDS, [*NUMERIC, *CATEGORICAL])  # "east": not a known region
    batch = parser.split_fast(unseen)
    assert batch is not None
    assert ("ok", batch.numeric.tobytes(), batch.categorical, ()) == _general(parser, unseen)
    assert parser.categories  # one body with an unseen category: still used


def test_known_categories_are_dropped_when_unseen_ones_keep_coming():
    parser = FeatureParser(NUMERIC, CATEGORICAL, 10, categories=KNOWN)
    body = _body(RECORDS, [*NUMERIC, *CATEGORICAL])
    for _ in range(_LITERAL_MISSES_MAX):
        assert parser.parse_json_body(body).categorical == (
            ["basic", "pro", None],
            ["north", None, "east"],
        )
    assert parser.categories == {}  # text only from now on: no decode that fails first
    assert parser.split_fast(body) is not None


def test_the_column_order_of_the_last_body_is_decoded_in_one_pass():
    """`split_fast` decodes the body with the row types of the previous body's column
    order; a body in another order (or with another column) is decoded with its own,
    whatever came before: each gives the general path's batch."""
    parser = FeatureParser(NUMERIC, CATEGORICAL, 10, categories=KNOWN)
    orders = [
        [*NUMERIC, *CATEGORICAL],
        ["region", "income", "plan", "age"],
        ["income", "age", "region", "plan"],  # the same types by position as the first
        [*NUMERIC, *CATEGORICAL],
    ]
    for columns in orders * 2:
        body = _body(RECORDS, columns)
        batch = parser.split_fast(body)
        assert batch is not None
        assert parser._last_columns == tuple(columns)
        expected = ("ok", batch.numeric.tobytes(), batch.categorical, batch.ignored_columns)
        assert expected == _general(parser, body)
        _assert_expected(batch)
    wide = orjson.dumps(
        {
            "dataframe_split": _split(
                [dict(r, note=1) for r in RECORDS], [*NUMERIC, *CATEGORICAL, "note"]
            )
        }
    )
    assert parser.split_fast(wide).ignored_columns == ("note",)
    # a body whose values do not fit the last order's types is decoded with its own
    swapped = _body(RECORDS, ["plan", "region", "age", "income"])
    _assert_expected(parser.split_fast(swapped))


def test_the_compiled_predictor_tells_the_categories_its_encoders_know():
    from include.ml_pipeline.serving.compiled.compiler import compile_pipeline
    from include.ml_pipeline.serving.parsing import parser_for
    from tests.support.models import fit_pipeline, training_frame

    frame, spec = training_frame(400, seed=3)
    compiled = compile_pipeline(
        fit_pipeline(frame, spec, "hgb", seed=3), spec.numeric, spec.categorical
    )
    known = compiled.categories(spec.categorical)
    for column in spec.categorical:
        assert set(frame[column].dropna().unique()) <= set(known[column])  # and the fill
    parser = parser_for(compiled, list(spec.numeric), list(spec.categorical), 10)
    assert set(parser.categories) == set(spec.categorical)


@pytest.mark.parametrize("rows", [1, 3, 40])  # 2 numeric columns: up to 32 rows in Python
def test_an_infinity_in_typed_rows_names_the_first_such_column_at_any_size(rows):
    """msgspec refuses a JSON number out of float range (the general path then refuses
    the body as JSON), so typed rows hold none; were one there, the few values of a small batch are
    checked in Python and a large batch's by numpy, with the same error."""
    parser = FeatureParser(NUMERIC, CATEGORICAL, max_rows=100)
    for age, income in ((1.0, float("inf")), (float("-inf"), float("inf")), (-np.inf, 2.0)):
        numeric = [(5.0,) * (rows - 1) + (age,), (income,) + (7.0,) * (rows - 1)]
        categorical = [("basic",) * rows, (None,) * rows]
        error = _error(lambda n=numeric, c=categorical: parser._assemble(n, c, rows, typed=True))
        column = "age" if np.isinf(age) else "income"
        assert (error.status, error.kind) == (422, "wrong_type")
        assert error.message == f"column {column!r} has a non-finite number"
    batch = parser._assemble(
        [(1.0,) * rows, (None,) * rows], [("a",) * rows, (None,) * rows], rows, typed=True
    )
    assert batch.rows == rows
    out_of_range = _body(RECORDS[:1], [*NUMERIC, *CATEGORICAL]).replace(b"1200.5", b"1e400")
    assert parser.split_fast(out_of_range) is None  # the general path answers it
    error = _error(lambda: parser.parse_json_body(out_of_range))
    assert (error.status, error.kind) == (400, "malformed_json")


def test_a_column_order_is_checked_on_every_body_until_it_is_valid(parser):
    """`split_fast` keeps each valid column order's layout; an order with a missing or a
    repeated column is refused on every body, with the general path's error."""
    for columns in (["age", "plan", "region"], ["age", "age", "income", "plan", "region"]):
        records = [dict(r, **{"age": 1.0}) for r in RECORDS]
        body = orjson.dumps({"dataframe_split": _split(records, columns)})
        for _ in range(2):
            error = _error(lambda body=body: parser.parse_json_body(body))
            assert (error.status, error.kind) == (
                (422, "missing_columns") if len(columns) == 3 else (400, "duplicate_columns")
            )
            assert _general(parser, body) == ("refused", "RequestError")
    for columns in ([*NUMERIC, *CATEGORICAL, "note"], ["note", "region", "income", "plan", "age"]):
        body = _body([dict(r, note=1) for r in RECORDS], columns)
        for _ in range(2):
            batch = parser.split_fast(body)
            assert batch is not None
            assert batch.ignored_columns == ("note",)
            _assert_expected(batch)
            expected = ("ok", batch.numeric.tobytes(), batch.categorical, batch.ignored_columns)
            assert expected == _general(parser, body)
