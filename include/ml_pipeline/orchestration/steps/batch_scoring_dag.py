"""Steps of `ml_batch_scoring`: wait for the table, pin the champion's version, check the
table against that version's input contract, plan the parts, score each part (mapped),
write the manifest, check the batch's drift, log the run to MLflow and announce a drifted
batch. What one step hands the next is a payload of small facts; the data and every
output live under the storage root (`<storage_uri>/batch_scoring/runs/<run key>/`), so
each step, and each part, may run on another worker."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from include.ml_pipeline.config import get_settings
from include.ml_pipeline.errors import BatchInputError, IncompleteOutput, MonitoringError
from include.ml_pipeline.orchestration.defaults import fail_without_retry
from include.ml_pipeline.orchestration.params import drift_thresholds
from include.ml_pipeline.payloads import (
    BatchInput,
    BatchScoringRun,
    Champion,
    DriftCheck,
    PlannedPart,
    ScoredPart,
    ScoringOutput,
)
from include.ml_pipeline.runs import batch_run_uri, run_key

LOG = logging.getLogger(__name__)

#: Bad input or configuration (a contract the table breaks, no champion, no such model):
#: a retry cannot help, fail at once with the message.
fail_on_bad_input = fail_without_retry(
    BatchInputError, IncompleteOutput, MonitoringError, FileNotFoundError, KeyError
)


def wait_for_input(params: Mapping[str, Any], started_at: Any) -> Any:
    """`wait_for_input`: done when `input_uri` holds a Parquet or CSV file (or a folder of
    them); otherwise reschedule after `sensor_poke_interval_seconds`, and time out after
    `sensor_timeout_seconds`. An input that can never be scored (Parquet and CSV mixed)
    fails at once."""
    import pendulum

    from include.ml_pipeline.batch_scoring.source import list_input
    from include.ml_pipeline.orchestration.compat import (
        AirflowFailException,
        AirflowRescheduleException,
        AirflowSensorTimeout,
        PokeReturnValue,
    )

    uri = params["input_uri"]
    try:
        listing = list_input(uri)
    except FileNotFoundError:
        listing = None
    except BatchInputError as exc:
        if "mixes" in str(exc):
            raise AirflowFailException(str(exc)) from exc
        listing = None
    if listing is not None:
        found = BatchInput(
            uri=listing.uri, format=listing.format, files=len(listing.files), bytes=listing.bytes
        )
        return PokeReturnValue(is_done=True, xcom_value=found.to_dict())
    waited = (pendulum.now("UTC") - started_at).total_seconds()
    if waited >= params["sensor_timeout_seconds"]:
        raise AirflowSensorTimeout(
            f"no Parquet or CSV file at {uri} after waiting {waited:.0f} s "
            f"(sensor_timeout_seconds={params['sensor_timeout_seconds']}); put the table "
            "there or trigger the run with another input_uri"
        )
    raise AirflowRescheduleException(
        pendulum.now("UTC").add(seconds=params["sensor_poke_interval_seconds"])
    )


@fail_on_bad_input
def pin_champion(params: Mapping[str, Any], *, log: logging.Logger = LOG) -> dict:
    """`pin_champion`: the version `models:/<model_name>@champion` names now; every later
    step, and every part, scores with this version even if the alias moves meanwhile."""
    from include.ml_pipeline.monitoring.champion import read_champion

    settings = get_settings()
    champion = read_champion(params["model_name"], tracking_uri=settings.mlflow_tracking_uri)
    if champion is None:
        raise MonitoringError(
            f"model {params['model_name']!r} has no champion in "
            f"{settings.mlflow_tracking_uri}: nothing to score with; deploy one first "
            "(make run) or set model_name"
        )
    log.info("scoring with %s (pinned: v%s)", champion.model_uri, champion.version)
    return champion.to_dict()


@fail_on_bad_input
def check_input(champion: dict, found: dict, params: Mapping[str, Any]) -> dict:
    """`check_input`: every file's schema against the pinned version's input contract,
    before any row is scored; a missing or retyped column fails the run, naming it."""
    from include.ml_pipeline.batch_scoring.contract_check import check_input as check
    from include.ml_pipeline.batch_scoring.source import file_schema, list_input
    from include.ml_pipeline.registry.contract import load_contract

    model = Champion.from_dict(champion)
    listing = list_input(BatchInput.from_dict(found).uri)
    contract = load_contract(get_settings().mlflow_tracking_uri, model.model_name, model.version)
    if contract is None:
        raise BatchInputError(
            f"{model.model_uri} has no input contract and no feature spec: the input "
            "cannot be checked; register the version with the pipeline (make run)"
        )
    checked = check(
        [(file, file_schema(file)) for file in listing.files],
        contract,
        key_columns=params["key_columns"] or None,
        non_null_columns=params["non_null_columns"],
        strict_categories=params["strict_categories"],
    )
    LOG.info(
        "input %s meets the contract of v%s (%d files); keys %s; extra columns %s",
        listing.uri,
        model.version,
        len(listing.files),
        checked.key_columns or "row_number",
        checked.extra_columns,
    )
    return checked.to_dict()


@fail_on_bad_input
def plan_parts(
    champion: dict, found: dict, checked: dict, params: Mapping[str, Any], *, run_id: str
) -> list[dict]:
    """`plan_parts`: the input split into parts of about `part_rows` rows (metadata only),
    the run's folder cleared of an earlier try, and `plan.json` written; one element per
    mapped `score_part`."""
    from include.ml_pipeline.batch_scoring.manifest import clear_output, write_plan
    from include.ml_pipeline.batch_scoring.model import load_batch_model
    from include.ml_pipeline.batch_scoring.shared import publish
    from include.ml_pipeline.batch_scoring.source import fingerprint, list_input
    from include.ml_pipeline.batch_scoring.source import plan_parts as plan

    model = Champion.from_dict(champion)
    listing = list_input(BatchInput.from_dict(found).uri)
    parts = plan(listing, params["part_rows"])
    run_uri = batch_run_uri(get_settings(), run_id)
    clear_output(run_uri)
    write_plan(
        run_uri,
        {
            "scoring_run_id": run_key(run_id),
            "airflow_run_id": run_id,
            "model_name": model.model_name,
            "model_version": model.version,
            "input": {
                "uri": listing.uri,
                "format": listing.format,
                "files": len(listing.files),
                "bytes": listing.bytes,
                "fingerprint": fingerprint(listing),
            },
            "check": checked,
            "parts": [p.to_dict() for p in parts],
        },
    )
    sample_rows = math.ceil(params["drift_max_rows"] / len(parts))
    # the pinned version loaded and verified once, here, for every part
    scorer = load_batch_model(get_settings().mlflow_tracking_uri, model.model_name, model.version)
    verified = publish(scorer, run_uri).to_dict()
    LOG.info("%d part(s) of %s planned under %s", len(parts), listing.uri, run_uri)
    return [
        PlannedPart(
            part=p.to_dict(),
            sample_rows=sample_rows,
            several_files=len(listing.files) > 1,
            verified_model=verified,
        ).to_dict()
        for p in parts
    ]


@fail_on_bad_input
def score_part(
    planned: dict, champion: dict, checked: dict, params: Mapping[str, Any], *, run_id: str
) -> dict:
    """`score_part`: one part, chunk by chunk, with the pinned version, into its own
    objects (rewritten whole by a retry)."""
    from include.ml_pipeline.batch_scoring.contract_check import InputCheck
    from include.ml_pipeline.batch_scoring.part import score_part as score
    from include.ml_pipeline.batch_scoring.source import Part

    model = Champion.from_dict(champion)
    item = PlannedPart.from_dict(planned)
    settings = get_settings()
    scorer = part_scorer(item, model, settings.mlflow_tracking_uri)
    report = score(
        Part.from_dict(item.part),
        model=scorer,
        check=InputCheck.from_dict(checked),
        run_uri=batch_run_uri(settings, run_id),
        scoring_run_id=run_key(run_id),
        several_files=item.several_files,
        chunk_rows=params["chunk_rows"],
        sample_rows=item.sample_rows,
    )
    return ScoredPart(
        name=report.name,
        rows_in=report.rows_in,
        rows_out=report.rows_out,
        rows_rejected=report.rows_rejected,
        seconds=report.seconds,
        predict_path=report.predict_path,
    ).to_dict()


def part_scorer(item: PlannedPart, champion: Champion, tracking_uri: str, log=LOG) -> Any:
    """The verified scorer `plan_parts` published (this process's copy when it has one;
    digest-checked, no second verification), else the pinned version loaded and verified
    here: when the plan has no record, or the object is missing, altered or unreadable."""
    from include.ml_pipeline.batch_scoring.model import load_batch_model
    from include.ml_pipeline.batch_scoring.shared import VerifiedModel, load_shared

    if item.verified_model is not None:
        record = VerifiedModel.from_dict(item.verified_model)
        try:
            return load_shared(record, champion.model_name, champion.version)
        except Exception as exc:  # any failure: verify the pinned version here instead
            log.warning("verified scorer not usable (%s); loading v%s here", exc, champion.version)
    return load_batch_model(tracking_uri, champion.model_name, champion.version)


def finalize_output(*, run_id: str, log: logging.Logger = LOG) -> dict:
    """`finalize_output` (runs whatever the parts did): the manifest from the parts'
    reports; `complete` only when every planned part is there with the pinned version,
    else the manifest says `incomplete` (naming the parts) and the task fails. When the
    run failed before `plan_parts` wrote its plan, nothing was scored: the task fails at
    once, without retries (no retry can bring a plan; the failed task's log says why)."""
    from include.ml_pipeline import storage
    from include.ml_pipeline.batch_scoring.manifest import (
        COMPLETE,
        MANIFEST,
        PLAN,
        build_manifest,
        read_plan,
    )
    from include.ml_pipeline.orchestration.compat import AirflowFailException

    run_uri = batch_run_uri(get_settings(), run_id)
    if not storage.exists(storage.join(run_uri, PLAN)):
        raise AirflowFailException(
            f"nothing to finalize: no part was planned under {run_uri} (a task before "
            "plan_parts failed, and its log says why); no output was written"
        )
    manifest = build_manifest(run_uri, read_plan(run_uri))
    if manifest["status"] != COMPLETE:
        raise AirflowFailException(
            f"the output under {run_uri} is incomplete (its manifest says so): "
            + "; ".join(manifest["problems"])
        )
    for text, count in manifest["reject_reasons"].items():
        log.warning("%d row(s) rejected: %s", count, text)
    return ScoringOutput(
        manifest_uri=storage.join(run_uri, MANIFEST),
        status=manifest["status"],
        rows_in=manifest["rows_in"],
        rows_out=manifest["rows_out"],
        rows_rejected=manifest["rows_rejected"],
        predictions_uri=manifest["predictions"],
        rejects_uri=manifest["rejects"],
        model_version=manifest["model_version"],
    ).to_dict()


@fail_on_bad_input
def compute_drift(champion: dict, output: dict, params: Mapping[str, Any], *, run_id: str) -> dict:
    """`compute_drift`: the scored batch's sample against the training split (the online
    check's statistics); the report is written beside the manifest."""
    from include.ml_pipeline import storage
    from include.ml_pipeline.batch_scoring.drift import batch_drift_reason, check_batch

    scored = ScoringOutput.from_dict(output)
    manifest = storage.read_json(scored.manifest_uri)
    model = Champion.from_dict(champion)
    report, uri = check_batch(
        batch_run_uri(get_settings(), run_id),
        model,
        manifest,
        drift_thresholds(params),
        tracking_uri=get_settings().mlflow_tracking_uri,
    )
    summary = report.summary()
    LOG.info("batch drift: %s; report %s", summary, uri)
    return DriftCheck(
        summary=summary,
        report_uri=uri,
        reason=batch_drift_reason(summary, model, manifest["input"]["uri"]),
    ).to_dict()


def log_to_mlflow(
    champion: dict,
    output: dict,
    drift: dict,
    params: Mapping[str, Any],
    *,
    dag_id: str,
    run_id: str,
) -> dict:
    """`log_to_mlflow`: a run of experiment `ml_batch_scoring` with the scoring facts, the
    drift metrics and report, and the manifest."""
    from include.ml_pipeline import storage
    from include.ml_pipeline.batch_scoring.drift import log_batch_run
    from include.ml_pipeline.monitoring.drift import STATUS_DRIFT

    scored = ScoringOutput.from_dict(output)
    checked = DriftCheck.from_dict(drift)
    settings = get_settings()
    mlflow_run_id = log_batch_run(
        storage.read_json(checked.report_uri),
        Champion.from_dict(champion),
        storage.read_json(scored.manifest_uri),
        tracking_uri=settings.mlflow_tracking_uri,
        artifact_location=settings.mlflow_artifact_root,
        airflow_run_id=run_id,
        dag_id=dag_id,
        report_uri=checked.report_uri,
        manifest_uri=scored.manifest_uri,
        params={**drift_thresholds(params), "part_rows": params["part_rows"]},
    )
    drifted = checked.summary.get("status") == STATUS_DRIFT
    return BatchScoringRun(mlflow_run_id=mlflow_run_id, drifted=drifted).to_dict()


def drift_detected(logged: dict, *, drifted: str, otherwise: str) -> str:
    """`drift_detected`: the task id to follow: `drifted` when the batch drifted."""
    return drifted if BatchScoringRun.from_dict(logged).drifted else otherwise


def notify_drift(
    champion: dict,
    output: dict,
    drift: dict,
    logged: dict,
    params: Mapping[str, Any],
    *,
    dag_id: str,
    run_id: str,
) -> dict:
    """`notify_drift`: one notification object under `notifications_uri` always, Slack /
    e-mail / Apprise / Jira when configured (as online drift)."""
    from include.ml_pipeline import storage
    from include.ml_pipeline.batch_scoring.drift import drift_notification
    from include.ml_pipeline.orchestration.alerts import airflow_run_url, deliver

    checked = DriftCheck.from_dict(drift)
    settings = get_settings()
    note = drift_notification(
        Champion.from_dict(champion),
        storage.read_json(ScoringOutput.from_dict(output).manifest_uri),
        checked.summary,
        checked.reason,
        report_uri=checked.report_uri,
        mlflow_run_id=BatchScoringRun.from_dict(logged).mlflow_run_id,
        airflow_run_url=airflow_run_url(dag_id, run_id),
        api_url=settings.api_url,
        dag_id=dag_id,
        run_id=run_id,
    )
    return deliver(note, params)
