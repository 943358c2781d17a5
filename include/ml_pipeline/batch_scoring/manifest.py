"""The run's plan and manifest: what was to be scored, and what the output holds.

`plan.json` (written before any part is scored): the scoring run id, the pinned model
version, the input (URI, format, fingerprint), the input check and the parts.

`_manifest.json` (written once the parts ended, whether they all succeeded or not): rows
in, rows out, rows refused and why, the model version, the input fingerprint, and per part
its report. `status` is `complete` only when every planned part reported, with the pinned
version and this run's id, and its predictions object holds the rows it reported;
otherwise `incomplete`, naming the parts missing or wrong. A reader takes a run's output
only when its manifest says `complete`: never a silent mix of two versions or two tries.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from include.ml_pipeline import storage
from include.ml_pipeline.batch_scoring.part import PARTS, PartReport, part_uri
from include.ml_pipeline.batch_scoring.source import Part

log = logging.getLogger(__name__)

PLAN = "plan.json"
MANIFEST = "_manifest.json"
FORMAT = "ml_pipeline.batch_scoring_manifest/1"
COMPLETE = "complete"
INCOMPLETE = "incomplete"


def write_plan(run_uri: str, plan: dict[str, Any]) -> str:
    return storage.write_json(storage.join(run_uri, PLAN), plan)


def read_plan(run_uri: str) -> dict[str, Any]:
    return storage.read_json(storage.join(run_uri, PLAN))


def clear_output(run_uri: str) -> None:
    """Remove what an earlier try of this run wrote (a fresh plan starts from nothing)."""
    storage.remove(run_uri, recursive=True)


def _rows_stored(uri: str) -> int | None:
    """Rows of the Parquet object at `uri` from its footer; None when it is unreadable."""
    import pyarrow.parquet as pq

    try:
        local = storage.local_path(uri)
        if local is not None:
            return pq.ParquetFile(str(local)).metadata.num_rows
        with storage.open_uri(uri, "rb") as handle:
            return pq.ParquetFile(handle).metadata.num_rows
    except (OSError, ValueError):
        return None


def build_manifest(run_uri: str, plan: dict[str, Any]) -> dict[str, Any]:
    """Read every planned part's report under `run_uri`, judge the output, write
    `_manifest.json` and return it."""
    parts = [Part.from_dict(p) for p in plan["parts"]]
    reports: list[PartReport] = []
    problems: list[str] = []
    for part in parts:
        uri = part_uri(run_uri, PARTS, part.name, ".json")
        if not storage.exists(uri):
            problems.append(f"{part.name} ({part.file.name}): not scored (no report)")
            continue
        report = PartReport.from_dict(storage.read_json(uri))
        if report.model_version != plan["model_version"]:
            problems.append(
                f"{part.name}: scored by v{report.model_version}, the run pinned "
                f"v{plan['model_version']}"
            )
        elif report.scoring_run_id != plan["scoring_run_id"]:
            problems.append(f"{part.name}: written by run {report.scoring_run_id}")
        elif _rows_stored(report.predictions_uri) != report.rows_out:
            problems.append(
                f"{part.name}: {report.predictions_uri} does not hold the "
                f"{report.rows_out} rows its report names"
            )
        reports.append(report)
    reasons: dict[str, int] = {}
    for report in reports:
        for text, count in report.reject_reasons.items():
            reasons[text] = reasons.get(text, 0) + count
    seconds = max((r.seconds for r in reports), default=0.0)
    rows_out = sum(r.rows_out for r in reports)
    manifest = {
        "format": FORMAT,
        "status": INCOMPLETE if problems else COMPLETE,
        "problems": problems,
        "scoring_run_id": plan["scoring_run_id"],
        "airflow_run_id": plan.get("airflow_run_id"),
        "model_name": plan["model_name"],
        "model_version": plan["model_version"],
        "predict_path": sorted({r.predict_path for r in reports}),
        "input": plan["input"],
        "rows_in": sum(r.rows_in for r in reports),
        "rows_out": rows_out,
        "rows_rejected": sum(r.rows_rejected for r in reports),
        "reject_reasons": dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
        "parts_planned": len(parts),
        "parts_done": len(reports),
        "scoring_seconds": round(sum(r.seconds for r in reports), 3),
        "longest_part_seconds": seconds,
        "predictions": storage.join(run_uri, "predictions"),
        "rejects": storage.join(run_uri, "rejects")
        if any(r.rejects_uri for r in reports)
        else None,
        "key_columns": plan["check"]["key_columns"],
        "extra_columns": plan["check"]["extra_columns"],
        "parts": [r.to_dict() for r in reports],
        "written_at": datetime.now(UTC).isoformat(),
    }
    storage.write_json(storage.join(run_uri, MANIFEST), manifest)
    log.info(
        "manifest %s: %s, %d rows in, %d scored, %d rejected",
        storage.join(run_uri, MANIFEST),
        manifest["status"],
        manifest["rows_in"],
        rows_out,
        manifest["rows_rejected"],
    )
    return manifest


#: The drift report a run's drift check writes beside its manifest (`drift.check_batch`).
DRIFT_REPORT = "drift_report.json"


def list_runs(
    runs_uri: str, model_name: str | None = None, limit: int = 20
) -> list[dict[str, Any]]:
    """The newest `limit` batch-scoring runs under `runs_uri` (of `model_name` only, when
    given), one row each for a listing such as the dashboard's: when, status, model
    version, rows in / out / refused, the drift verdict (None before the drift check ran)
    and the manifest's URI. A manifest that cannot be read is skipped."""
    rows: list[dict[str, Any]] = []
    for uri in storage.list_files(runs_uri, suffix=f"/{MANIFEST}"):
        try:
            manifest = storage.read_json(uri)
        except (OSError, ValueError) as exc:
            log.warning("batch run listing: %s skipped (%s)", uri, exc)
            continue
        if model_name is not None and manifest.get("model_name") != model_name:
            continue
        drift_uri = uri[: -len(MANIFEST)] + DRIFT_REPORT
        drift = None
        if storage.exists(drift_uri):
            try:
                drift = storage.read_json(drift_uri).get("summary", {}).get("status")
            except (OSError, ValueError):
                drift = None
        rows.append(
            {
                "written_at": manifest.get("written_at"),
                "scoring_run_id": manifest.get("scoring_run_id"),
                "airflow_run_id": manifest.get("airflow_run_id"),
                "status": manifest.get("status"),
                "model_name": manifest.get("model_name"),
                "model_version": manifest.get("model_version"),
                "rows_in": manifest.get("rows_in"),
                "rows_out": manifest.get("rows_out"),
                "rows_rejected": manifest.get("rows_rejected"),
                "drift": drift,
                "input": (manifest.get("input") or {}).get("uri"),
                "manifest_uri": uri,
            }
        )
    rows.sort(key=lambda row: str(row["written_at"] or ""), reverse=True)
    return rows[:limit]
