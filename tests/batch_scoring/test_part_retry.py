"""A part killed (SIGKILL) in the middle of writing its predictions, then retried: the
retry rewrites only that part, the output holds each of its rows exactly once, no
temporary file of the killed try is left, the other parts are untouched and the manifest
says complete."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from include.ml_pipeline import storage
from include.ml_pipeline.batch_scoring import manifest as manifests
from include.ml_pipeline.batch_scoring.part import score_part
from tests.batch_scoring.conftest import prepare_run, write_table

ROOT = Path(__file__).resolve().parents[2]
#: A child process importing MLflow and scikit-learn is started for the killed try.
pytestmark = pytest.mark.services

#: Scores part `index` in a fresh process whose Parquet writer kills the process (SIGKILL,
#: no clean-up possible) right after it wrote its second chunk.
KILLED_TRY = textwrap.dedent(
    """
    import json, os, signal, sys
    import pyarrow.parquet as pq
    from tests.batch_scoring.conftest import prepare_run
    from include.ml_pipeline.batch_scoring.part import score_part

    args = json.loads(sys.argv[1])
    model, check, parts, plan = prepare_run(
        args["champion"], args["tracking_uri"], args["input"], args["out"]
    )
    original = pq.ParquetWriter.write_table
    written = []

    def write_then_die(self, table, *a, **k):
        original(self, table, *a, **k)
        written.append(table.num_rows)
        if len(written) == 2:
            print("killing myself mid-write", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

    pq.ParquetWriter.write_table = write_then_die
    score_part(parts[args["index"]], model=model, check=check, run_uri=args["out"],
               scoring_run_id="run-1", several_files=False, chunk_rows=300, sample_rows=50)
    """
)


def test_a_part_killed_mid_write_is_retried_without_duplicates(champions, tmp_path):
    champion = champions["binary"]
    frame = write_table(tmp_path / "in.parquet", 2_400, seed=8, row_group=400)
    out = storage.as_uri(tmp_path / "out")
    model, check, parts, plan = prepare_run(
        champion, champions["tracking_uri"], str(tmp_path / "in.parquet"), out
    )
    assert len(parts) == 3

    def score(index: int):
        return score_part(
            parts[index],
            model=model,
            check=check,
            run_uri=out,
            scoring_run_id="run-1",
            several_files=False,
            chunk_rows=300,
            sample_rows=50,
        )

    score(0)
    score(2)
    predictions = tmp_path / "out" / "predictions"
    before = {p.name: p.stat().st_mtime_ns for p in predictions.iterdir()}

    args = {
        "champion": {k: champion[k] for k in ("name", "version")},
        "tracking_uri": champions["tracking_uri"],
        "input": str(tmp_path / "in.parquet"),
        "out": out,
        "index": 1,
    }
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_TRY, json.dumps(args)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    assert "killing myself mid-write" in killed.stdout
    # The killed try left a temporary file, never a visible part, and no report.
    assert not (predictions / "part-00001.parquet").exists()
    assert [p.name for p in predictions.glob(".part-00001.parquet.*")]
    assert manifests.build_manifest(out, plan)["status"] == "incomplete"

    score(1)  # the retry
    assert not list(predictions.glob(".*"))  # the killed try's leftovers are gone
    after = {p.name: p.stat().st_mtime_ns for p in predictions.iterdir()}
    assert {k: after[k] for k in before} == before  # the other parts untouched
    got = pq.read_table(predictions).to_pandas()
    assert len(got) == 2_400
    assert sorted(got["customer_id"]) == sorted(frame["customer_id"])  # once each
    part = pq.read_table(predictions / "part-00001.parquet").to_pandas()
    assert len(part) == parts[1].rows == 800
    manifest = manifests.build_manifest(out, plan)
    assert manifest["status"] == "complete", manifest["problems"]
    assert manifest["rows_out"] == 2_400
