"""`make run`'s Params from the command line: --params-file, --conf-string, --conf."""

from __future__ import annotations

import argparse
import json

import pytest

from devtools import run_pipeline as rp


def _args(**kw):
    return argparse.Namespace(**{"params_file": None, "conf_string": None, "conf": None, **kw})


def test_values_are_json_when_they_parse_else_text():
    assert rp.parse_conf_string(
        "min_rows=100 test_size=0.25 target=label allow_contract_change=true "
        "min_roc_auc=null exclude_columns='[\"id\", \"name\"]' model_name='my model'"
    ) == {
        "min_rows": 100,
        "test_size": 0.25,
        "target": "label",
        "allow_contract_change": True,
        "min_roc_auc": None,
        "exclude_columns": ["id", "name"],
        "model_name": "my model",
    }


def test_later_sources_win(tmp_path):
    file = tmp_path / "p.json"
    file.write_text(json.dumps({"min_rows": 50, "seed": 1, "test_size": 0.3}))
    args = _args(params_file=[str(file)], conf_string=["min_rows=80 seed=2"], conf=["seed=3"])
    assert rp.param_overrides(args) == {"min_rows": 80, "seed": 3, "test_size": 0.3}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"conf_string": ["min_rows"]}, "'min_rows' is not KEY=VALUE"),
        ({"conf_string": ["a='b"]}, "unbalanced quotes"),
        ({"conf": ["=5"]}, "is not KEY=VALUE"),
        ({"params_file": ["/no/such/params.json"]}, "no such file"),
    ],
)
def test_malformed_input_stops_with_a_message(kwargs, message):
    with pytest.raises(SystemExit, match=message):
        rp.param_overrides(_args(**kwargs))


def test_params_file_must_be_a_json_object(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(SystemExit, match="expected a JSON object"):
        rp.read_params_file(str(bad))
    bad.write_text("{min_rows: 1}")
    with pytest.raises(SystemExit, match="not valid JSON"):
        rp.read_params_file(str(bad))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"min_row": 100}, "unknown Param 'min_row'; did you mean min_rows"),
        ({"min_rows": "many"}, 'Param min_rows="many": not accepted'),
        ({"allow_contract_change": "yes"}, "not accepted"),
    ],
)
def test_unknown_params_and_refused_values_stop_before_the_run(overrides, message):
    with pytest.raises(SystemExit, match=message):
        rp.check_params(overrides)


def test_known_params_pass():
    ok = {"min_rows": 100, "allow_contract_change": True, "min_lift_over_baseline": None}
    assert rp.check_params(ok) == ok


def test_json_with_double_quotes_survives_the_make_variable():
    # make run CONF='exclude_columns=["id"] value_ranges={"age": [0, 120]} model_name="a b"'
    assert rp.parse_conf_string(
        'exclude_columns=["id", "order no"] value_ranges={"age": [0, 120]} model_name="a b"'
    ) == {
        "exclude_columns": ["id", "order no"],
        "value_ranges": {"age": [0, 120]},
        "model_name": "a b",
    }
