"""End to end: the DAG's sensor and data-preparation group on small data."""

from __future__ import annotations

import pandas as pd

from include.ml_pipeline.data_preparation.sample_data import generate_churn_frame

PREP = "preparacion_datos."


def test_preparation_produces_tables_and_stratified_splits(deployed_run):
    result = deployed_run.result  # the session's good run on small_csv (1,500 rows)
    assert result.task_state("esperar_datos") == "success"
    loaded = result.result(PREP + "descargar_datos")
    assert loaded["rows"] == 1_500
    assert loaded["table"].startswith("raw__")
    split = result.result(PREP + "dividir_datos")
    assert split["rows"] == {"train": 900, "validation": 300, "test": 300}
    train = pd.read_parquet(split["uris"]["train"])
    assert list(train.columns) == [
        *split["feature_spec"]["numeric"],
        *split["feature_spec"]["categorical"],
        "churn",
    ]
    assert train["age"].dtype == "float64"


def test_sensor_times_out_with_a_clear_message(run_dag, pipeline_home):
    missing = pipeline_home / "incoming" / "never_arrives.csv"
    missing.parent.mkdir(parents=True, exist_ok=True)  # the folder exists: a real wait
    result = run_dag(
        {"data_uri": str(missing), "sensor_poke_interval_seconds": 1, "sensor_timeout_seconds": 3}
    )
    assert result.state == "failed"
    assert result.task_state("esperar_datos") == "failed"
    assert f"no data at {missing} after waiting" in result.log
    assert result.task_state(PREP + "descargar_datos") == "upstream_failed"


def test_a_data_uri_in_a_folder_that_does_not_exist_fails_at_once(run_dag, pipeline_home):
    missing = pipeline_home / "no_such_folder" / "table.csv"
    result = run_dag({"data_uri": str(missing), "sensor_timeout_seconds": 6 * 3600})
    assert result.state == "failed"
    assert result.task_state("esperar_datos") == "failed"
    assert f"the folder {missing.parent} does not exist" in result.log
    assert result.task_state("notificar_fallo") == "success"


def test_bad_data_fails_validation_and_nothing_downstream_runs(run_dag, pipeline_home):
    frame = generate_churn_frame(800, seed=5)
    frame["tenure_months"] = frame["tenure_months"].astype(object)
    frame.loc[10, "tenure_months"] = "ten years"
    path = pipeline_home / "incoming" / "garbage.csv"
    frame.to_csv(path, index=False)
    result = run_dag({"data_uri": str(path)})
    assert result.state == "failed"
    assert result.task_state(PREP + "validar_datos") == "failed"
    assert "column 'tenure_months': rule 'numeric_parseable' broken" in result.log
    assert "'ten years' on line 12" in result.log
    # The one failure notification names the task and the broken rule, not just the task.
    from include.ml_pipeline.notifications import read_log

    note = read_log()[-1]
    assert note["event"] == "failed"
    assert any("validar_datos" in r and "numeric_parseable" in r for r in note["reasons"])
    assert result.task_state(PREP + "preprocesar_datos") == "upstream_failed"


def _failure_note():
    from include.ml_pipeline.notifications import read_log

    return read_log()[-1]


def test_infinite_numbers_fail_validation_at_once_naming_column_and_line(run_dag, pipeline_home):
    frame = generate_churn_frame(800, seed=6)
    frame["monthly_charges"] = frame["monthly_charges"].astype(object)
    frame.loc[20, "monthly_charges"] = "1e400"
    path = pipeline_home / "incoming" / "overflow.csv"
    frame.to_csv(path, index=False)
    result = run_dag({"data_uri": str(path)})
    assert result.state == "failed"
    assert result.task_state(PREP + "validar_datos") == "failed"
    assert "column 'monthly_charges': rule 'finite_numbers' broken" in result.log
    assert "'1e400' on line 22" in result.log
    # A deterministic failure: one attempt, no retries, and no candidate was trained.
    ti = result.dag_run.get_task_instance(PREP + "validar_datos")
    assert ti.try_number <= 1
    assert result.task_state(PREP + "preprocesar_datos") == "upstream_failed"
    note = _failure_note()
    assert any("finite_numbers" in r for r in note["reasons"])


def test_a_ragged_csv_fails_the_load_with_our_message(run_dag, pipeline_home):
    lines = generate_churn_frame(400, seed=8).to_csv(index=False).splitlines()
    lines[150] = lines[150] + ",surplus"
    path = pipeline_home / "incoming" / "ragged.csv"
    path.write_text("\n".join(lines) + "\n")
    result = run_dag({"data_uri": str(path)})
    assert result.state == "failed"
    assert result.task_state(PREP + "descargar_datos") == "failed"
    assert "line 151 (counting the header as line 1) has 13 fields but the header has 12" in (
        result.log
    )
    assert "null_padding" not in result.log
    assert "Invalid Input Error" not in result.log
    note = _failure_note()
    assert any("descargar_datos" in r and "line 151" in r for r in note["reasons"])
