"""The pinned version is loaded and verified once, by `plan_parts`, and shared with the
parts: a part in a process that holds nothing (another Celery worker) reads the published
scorer from the storage root, checks its digest and scores exactly as the verified model
does, without loading the version from MLflow again; an altered object, or one of another
version, is refused and the part loads and verifies the pinned version itself."""

from __future__ import annotations

import pyarrow as pa
import pytest

from include.ml_pipeline import storage
from include.ml_pipeline.batch_scoring import model as models
from include.ml_pipeline.batch_scoring import shared
from include.ml_pipeline.orchestration.steps.batch_scoring_dag import part_scorer
from include.ml_pipeline.payloads import Champion, PlannedPart


@pytest.fixture
def loads(monkeypatch):
    """Counts `load_batch_model` calls (the MLflow download + compile + verify path)."""
    calls: list[str] = []
    original = models.load_batch_model

    def counted(tracking_uri, name, version):
        calls.append(f"{name} v{version}")
        return original(tracking_uri, name, version)

    monkeypatch.setattr(models, "load_batch_model", counted)
    return calls


def _planned(record: shared.VerifiedModel | None) -> PlannedPart:
    return PlannedPart(
        part={}, sample_rows=0, several_files=False, verified_model=record and record.to_dict()
    )


def _champion(champion: dict, version: str | None = None) -> Champion:
    version = version or champion["version"]
    return Champion(
        model_name=champion["name"],
        version=version,
        alias="champion",
        run_id=None,
        model_uri=f"models:/{champion['name']}/{version}",
        feature_spec=champion["spec"],
        train_path=None,
    )


def _table(champion: dict, rows: int = 500) -> pa.Table:
    from include.ml_pipeline.data_preparation.sample_data import generate_churn_frame
    from include.ml_pipeline.features import coerce_features

    frame = coerce_features(generate_churn_frame(rows, seed=13), champion["spec"])
    return pa.Table.from_pandas(frame, preserve_index=False)


@pytest.mark.parametrize("problem", ["binary", "multiclass"])
def test_a_part_on_another_worker_scores_with_the_published_scorer(
    champions, tmp_path, loads, problem
):
    champion = champions[problem]
    tracking_uri = champions["tracking_uri"]
    verified = models.load_batch_model(tracking_uri, champion["name"], champion["version"])
    record = shared.publish(verified, storage.as_uri(tmp_path / "run"))
    assert record.version == champion["version"]
    assert record.path == verified.path
    shared.forget()  # a fresh worker process: nothing in memory, only the storage root

    scorer = part_scorer(_planned(record), _champion(champion), tracking_uri)
    assert loads == [f"{champion['name']} v{champion['version']}"]  # only the planning one
    assert scorer is not verified
    assert scorer.path == verified.path
    table = _table(champion)
    got, expected = scorer.score(table), verified.score(table)
    for name, values in expected.items():
        values = values.to_pylist() if isinstance(values, pa.Array) else values.tolist()
        column = got[name]
        assert (column.to_pylist() if isinstance(column, pa.Array) else column.tolist()) == values
    # a second part in the same process takes the scorer from memory
    assert part_scorer(_planned(record), _champion(champion), tracking_uri) is scorer
    assert len(loads) == 1


def test_an_altered_or_foreign_scorer_is_refused_and_the_part_verifies_itself(
    champions, tmp_path, loads
):
    champion = champions["binary"]
    tracking_uri = champions["tracking_uri"]
    verified = models.load_batch_model(tracking_uri, champion["name"], champion["version"])
    record = shared.publish(verified, storage.as_uri(tmp_path / "run"))
    shared.forget()

    with pytest.raises(shared.SharedModelError, match="the run pinned"):
        shared.load_shared(record, champion["name"], "999")
    path = storage.local_path(record.uri)
    path.write_bytes(path.read_bytes() + b"tampered")
    with pytest.raises(shared.SharedModelError, match=r"sha256 .* differs"):
        shared.load_shared(record, champion["name"], champion["version"])

    loads.clear()
    scorer = part_scorer(_planned(record), _champion(champion), tracking_uri)
    assert loads == [f"{champion['name']} v{champion['version']}"]  # verified here instead
    assert scorer.path == verified.path
    assert len(scorer.score(_table(champion))["prediction"]) == 500
    # a plan without a record (an older run): the part loads the version itself
    loads.clear()
    part_scorer(_planned(None), _champion(champion), tracking_uri)
    assert len(loads) == 1


#: A part on a fresh worker: the DAG step's `part_scorer`, then `score_part` on the part;
#: prints the path, the scikit-learn / MLflow modules it imported and what it wrote.
_FRESH_PART = """
import json, sys
from include.ml_pipeline.batch_scoring.contract_check import InputCheck
from include.ml_pipeline.batch_scoring.part import score_part
from include.ml_pipeline.batch_scoring.source import Part
from include.ml_pipeline.orchestration.steps.batch_scoring_dag import part_scorer
from include.ml_pipeline.payloads import Champion, PlannedPart

args = json.loads(sys.argv[1])
item = PlannedPart.from_dict(args["planned"])
scorer = part_scorer(item, Champion.from_dict(args["champion"]), args["tracking_uri"])
report = score_part(
    Part.from_dict(args["part"]),
    model=scorer,
    check=InputCheck.from_dict(args["check"]),
    run_uri=args["out"],
    scoring_run_id="run-1",
    several_files=False,
)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("sklearn", "mlflow"))
print("RESULT " + json.dumps({"path": scorer.path, "heavy": heavy, "rows": report.rows_out}))
"""


def _fresh_part(args: dict) -> dict:
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", _FRESH_PART, json.dumps(args)],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0, done.stderr[-3000:]
    assert lines, done.stdout[-3000:]
    return json.loads(lines[-1].removeprefix("RESULT "))


@pytest.mark.parametrize("problem", ["binary", "multiclass"])
def test_a_part_in_a_fresh_process_never_imports_scikit_learn(champions, tmp_path, problem):
    """The published scorer holds no scikit-learn object on a compiled path (the leaf
    masks' recheck uses the verification batch's expected raw scores stored with it): a
    part in a fresh process imports neither scikit-learn nor MLflow, and writes the
    verified model's predictions; a tampered object is still refused there."""
    import pyarrow.parquet as pq

    from tests.batch_scoring.conftest import prepare_run, write_table

    champion = champions[problem]
    tracking_uri = champions["tracking_uri"]
    frame = write_table(tmp_path / "in.parquet", 1_200, seed=17)
    verified, check, parts, _ = prepare_run(
        champion,
        tracking_uri,
        str(tmp_path / "in.parquet"),
        str(tmp_path / "plan"),
        part_rows=2_000,
    )
    record = shared.publish(verified, storage.as_uri(tmp_path / "run"))
    assert verified.path.startswith("compiled:")
    (part,) = parts
    out = storage.as_uri(tmp_path / "out")
    args = {
        "planned": _planned(record).to_dict(),
        "champion": _champion(champion).to_dict(),
        "part": part.to_dict(),
        "check": check.to_dict(),
        "out": out,
        "tracking_uri": tracking_uri,
    }

    result = _fresh_part(args)
    assert result["heavy"] == []  # neither scikit-learn nor MLflow was imported
    assert result["path"] == verified.path
    assert result["rows"] == 1_200
    got = pq.read_table(storage.local_path(out) / "predictions").to_pandas()
    assert got["customer_id"].tolist() == frame["customer_id"].tolist()
    table = pq.read_table(tmp_path / "in.parquet")
    for name, values in verified.score(table).items():
        values = values.to_pylist() if hasattr(values, "to_pylist") else values.tolist()
        assert got[name].tolist() == values, name

    # the same object altered after planning: refused in the fresh process, which then
    # loads and verifies the pinned version itself (importing scikit-learn to do so)
    path = storage.local_path(record.uri)
    path.write_bytes(path.read_bytes()[:-1] + b"\x00")
    shared.forget()
    with pytest.raises(shared.SharedModelError, match=r"sha256 .* differs"):
        shared.load_shared(record, champion["name"], champion["version"])
    result = _fresh_part(args | {"out": storage.as_uri(tmp_path / "out2")})
    assert "sklearn" in {m.split(".")[0] for m in result["heavy"]}
    assert result["path"] == verified.path
