"""Batch scoring without Airflow: the parts of a generated table scored with each champion
equal the registered model's own `predict` / `predict_proba`, row for row; rows that
cannot be scored go to the rejects file with their reason; the manifest judges the output;
a contract-breaking input is refused naming the column."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from include.ml_pipeline import storage
from include.ml_pipeline.batch_scoring import manifest as manifests
from include.ml_pipeline.batch_scoring.contract_check import check_input
from include.ml_pipeline.batch_scoring.part import score_part
from include.ml_pipeline.batch_scoring.source import file_schema, list_input
from include.ml_pipeline.errors import BatchInputError
from include.ml_pipeline.registry.contract import load_contract
from tests.batch_scoring.conftest import prepare_run, write_table


def _score_all(champion: dict, tracking_uri: str, input_uri: str, out: str, **options):
    """Plan, score every part and write the manifest, as the DAG's tasks do."""
    model, check, parts, plan = prepare_run(champion, tracking_uri, input_uri, out, **options)
    for part in parts:
        score_part(
            part,
            model=model,
            check=check,
            run_uri=out,
            scoring_run_id=plan["scoring_run_id"],
            several_files=plan["input"]["files"] > 1,
            chunk_rows=300,
            sample_rows=100,
        )
    return model, parts, manifests.build_manifest(out, plan)


def _expected(champion: dict, frame: pd.DataFrame):
    """The registered model's own answers (`mlflow.sklearn.load_model` of the version)."""
    from include.ml_pipeline.features import coerce_features
    from include.ml_pipeline.registry.mlflow_setup import load_sklearn_model

    pipeline = load_sklearn_model(f"models:/{champion['name']}/{champion['version']}")
    X = coerce_features(frame, champion["spec"])
    proba = pipeline.predict_proba(X) if hasattr(pipeline, "predict_proba") else None
    return pipeline, pipeline.predict(X), proba


@pytest.mark.parametrize("problem", ["binary", "multiclass", "regression"])
def test_parts_equal_the_registered_models_predictions(champions, tmp_path, problem):
    champion = champions[problem]
    frame = write_table(tmp_path / "in", 2_000, seed=21, files=2)
    out = storage.as_uri(tmp_path / "out")
    model, parts, manifest = _score_all(
        champion, champions["tracking_uri"], str(tmp_path / "in"), out
    )
    assert len(parts) > 2  # several parts per file: row groups of 400, parts of 800 rows
    assert manifest["status"] == "complete", manifest["problems"]
    assert (manifest["rows_in"], manifest["rows_out"], manifest["rows_rejected"]) == (
        2_000,
        2_000,
        0,
    )
    # every champion compiled: the regressor (ridge) too
    assert model.path.startswith("compiled:"), model.reason
    if problem == "multiclass":  # gradient boosting: its trees scored as leaf masks
        assert model.path.endswith("+leaf-masks-numba"), model.path

    # each part's report says where its CPU time went, stage by stage
    for part in parts:
        report = storage.read_json(storage.join(out, "parts", f"{part.name}.json"))
        stages = report["cpu_seconds"]
        assert set(stages) == {"read", "check", "score", "output", "write", "sample"}
        assert all(seconds >= 0 for seconds in stages.values())

    got = pq.read_table(storage.local_path(out) / "predictions").to_pandas()
    assert sorted(got["customer_id"]) == sorted(frame["customer_id"])  # each row once
    got = got.set_index("customer_id").loc[frame["customer_id"]]
    assert set(got["model_version"]) == {champion["version"]}
    assert set(got["scoring_run_id"]) == {"run-1"}
    pipeline, labels, proba = _expected(champion, frame)
    if proba is None:
        # the same pipeline on chunks: equal up to floating-point summation order
        np.testing.assert_allclose(got["prediction"], labels, rtol=1e-12)
        assert "proba_" not in "".join(got.columns)
    else:
        assert got["prediction"].tolist() == labels.tolist()
        columns = [f"proba_{c}" for c in pipeline.classes_]
        np.testing.assert_allclose(got[columns].to_numpy(), proba, rtol=0, atol=1e-6)


def test_a_missing_and_a_retyped_column_are_refused_by_name(champions, tmp_path):
    champion = champions["binary"]
    frame = write_table(tmp_path / "ok.parquet", 200, seed=2)
    broken = frame.drop(columns=["age"]).assign(tenure_months=frame["tenure_months"].astype(str))
    broken.to_parquet(tmp_path / "broken.parquet", index=False)
    listing = list_input(str(tmp_path / "broken.parquet"))
    contract = load_contract(champions["tracking_uri"], champion["name"], champion["version"])
    with pytest.raises(BatchInputError) as refused:
        check_input([(f, file_schema(f)) for f in listing.files], contract)
    message = str(refused.value)
    assert "column 'age' (numeric) is missing" in message
    assert "column 'tenure_months' is numeric in the contract but string" in message
    assert "broken.parquet" in message


def test_extra_columns_pass_and_id_like_columns_are_the_keys(champions, tmp_path):
    champion = champions["binary"]
    frame = write_table(tmp_path / "in.parquet", 100, seed=4)
    frame.assign(note="x").to_parquet(tmp_path / "in.parquet", index=False)
    listing = list_input(str(tmp_path / "in.parquet"))
    contract = load_contract(champions["tracking_uri"], champion["name"], champion["version"])
    check = check_input([(f, file_schema(f)) for f in listing.files], contract)
    assert check.key_columns == ["customer_id"]
    assert set(check.extra_columns) == {"customer_id", "note", "churn"}


def test_unscorable_rows_go_to_the_rejects_file_with_their_reason(champions, tmp_path):
    champion = champions["binary"]
    frame = write_table(tmp_path / "in.parquet", 1_000, seed=5)
    frame.loc[[3, 500], "region"] = "atlantis"
    frame.to_parquet(tmp_path / "in.parquet", index=False, row_group_size=400)
    missing_age = int(frame["age"].isna().sum())
    out = storage.as_uri(tmp_path / "out")
    _, _, manifest = _score_all(
        champion,
        champions["tracking_uri"],
        str(tmp_path / "in.parquet"),
        out,
        non_null_columns=["age"],
        strict_categories=True,
    )
    assert missing_age > 0
    rejected = pq.read_table(storage.local_path(out) / "rejects").to_pandas()
    assert manifest["rows_rejected"] == len(rejected) == missing_age + 2
    assert manifest["rows_in"] == manifest["rows_out"] + manifest["rows_rejected"] == 1_000
    unseen = rejected[rejected["region"] == "atlantis"]
    assert sorted(unseen["row_number"]) == [3, 500]
    assert set(unseen["reject_reason"]) == {
        "category 'atlantis' of column 'region' never seen in training"
    }
    assert manifest["reject_reasons"]["missing value in required column 'age'"] == missing_age
    scored = pq.read_table(storage.local_path(out) / "predictions").to_pandas()
    assert not set(scored["customer_id"]) & set(rejected["customer_id"])

    # the drift sample: per part at most `sample_rows` (100) of its scored rows, drawn
    # across the whole part (not its first chunk), each with that row's own prediction
    # (the rows' positions mapped past the rejected ones)
    frame["row_number"] = range(len(frame))
    scored = scored.merge(frame, on="customer_id")
    features = ["tenure_months", "monthly_charges", "total_charges"]
    for part, rows in (("part-00000", range(800)), ("part-00001", range(800, 1000))):
        sample = pq.read_table(storage.local_path(out) / "samples" / f"{part}.parquet")
        sample = sample.to_pandas()
        in_part = scored[scored["row_number"].isin(rows)]
        assert 100 - (len(rows) - len(in_part)) <= len(sample) <= 100
        found = sample.merge(in_part, on=features, suffixes=("", "_scored"))
        assert len(found) == len(sample)
        assert (found["prediction"] == found["prediction_scored"]).all()
        for name in [c for c in sample.columns if c.startswith("proba_")]:
            assert found[name].tolist() == found[f"{name}_scored"].tolist()
        if len(rows) == 800:  # three chunks of 300 rows: all drawn from
            assert found["row_number"].max() >= 600
            assert found["row_number"].min() < 300


def test_the_manifest_marks_a_missing_part_or_another_version_incomplete(champions, tmp_path):
    champion = champions["binary"]
    write_table(tmp_path / "in.parquet", 1_600, seed=6)
    out = storage.as_uri(tmp_path / "out")
    _, parts, manifest = _score_all(
        champion, champions["tracking_uri"], str(tmp_path / "in.parquet"), out
    )
    assert manifest["status"] == "complete"
    assert len(parts) == 2
    plan = manifests.read_plan(out)
    report_uri = storage.join(out, "parts", "part-00001.json")
    report = storage.read_json(report_uri)
    storage.write_json(report_uri, {**report, "model_version": "999"})
    judged = manifests.build_manifest(out, plan)
    assert judged["status"] == "incomplete"
    assert judged["problems"] == [
        f"part-00001: scored by v999, the run pinned v{champion['version']}"
    ]
    storage.remove(report_uri)
    judged = manifests.build_manifest(out, plan)
    assert judged["problems"] == ["part-00001 (in.parquet): not scored (no report)"]
    assert storage.read_json(storage.join(out, "_manifest.json"))["status"] == "incomplete"


def test_a_part_reads_only_the_keys_and_features_unless_rows_may_be_rejected(tmp_path):
    from include.ml_pipeline.batch_scoring.contract_check import InputCheck
    from include.ml_pipeline.batch_scoring.part import _columns_read
    from include.ml_pipeline.batch_scoring.source import iter_chunks, plan_parts

    frame = write_table(tmp_path / "in.parquet", 50, seed=3)
    frame.assign(wide_note="x" * 100).to_parquet(tmp_path / "in.parquet", index=False)
    numeric, categorical = ["age", "tenure_months"], ["region"]
    check = InputCheck(numeric, categorical, ["wide_note", "churn"], ["customer_id"], [])
    (part,) = plan_parts(list_input(str(tmp_path / "in.parquet")), 1_000)
    (batch,) = iter_chunks(part, _columns_read(check))
    assert batch.schema.names == ["customer_id", "age", "tenure_months", "region"]
    # a row may go to the rejects file, which holds every column: all are read
    check = dataclasses.replace(check, non_null_columns=["age"])
    (batch,) = iter_chunks(part, _columns_read(check))
    assert set(batch.schema.names) == set(frame.columns) | {"wide_note"}


def test_a_part_allocates_arrow_memory_from_jemalloc_and_restores_the_pool(
    champions, tmp_path, monkeypatch
):
    """pyarrow's default pool (mimalloc) gives a part's freed chunks back to the system and
    faults them in again; a part reads, takes and writes from jemalloc (the C heap where
    pyarrow has none), and leaves the process's pool as it found it, or as the process
    chose it (`ARROW_DEFAULT_MEMORY_POOL`)."""
    import pyarrow as pa

    from include.ml_pipeline.batch_scoring import part as parts_module

    monkeypatch.delenv(parts_module.ARROW_POOL_VARIABLE, raising=False)
    try:
        expected = pa.jemalloc_memory_pool().backend_name
    except NotImplementedError:  # a pyarrow built without jemalloc
        expected = "system"
    seen: list[str] = []
    reading = parts_module.iter_chunks

    def iter_chunks(*args, **kwargs):
        for batch in reading(*args, **kwargs):
            seen.append(pa.default_memory_pool().backend_name)
            yield batch

    monkeypatch.setattr(parts_module, "iter_chunks", iter_chunks)
    write_table(tmp_path / "in.parquet", 700, seed=9)
    out = storage.as_uri(tmp_path / "out")
    before = pa.default_memory_pool().backend_name
    assert before != expected  # pyarrow's own default: the part changes it
    _, _, manifest = _score_all(
        champions["binary"], champions["tracking_uri"], str(tmp_path / "in.parquet"), out
    )
    assert manifest["status"] == "complete"
    assert len(seen) >= 3  # every chunk (700 rows, at most 300 a chunk)
    assert set(seen) == {expected}
    assert pa.default_memory_pool().backend_name == before

    # a process that chose its pool keeps it
    seen.clear()
    monkeypatch.setenv(parts_module.ARROW_POOL_VARIABLE, before)
    _score_all(champions["binary"], champions["tracking_uri"], str(tmp_path / "in.parquet"), out)
    assert len(seen) >= 3
    assert set(seen) == {before}
