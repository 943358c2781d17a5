"""Replay: the challenger on the champion's last live requests, before it sees one.

`replay_live_traffic(log_uri, challenger, champion_version)` reads the newest `rows` rows
of live traffic the champion answered (the inference log: smoke and benchmark traffic is
left out), predicts them with the challenger exactly as it will be served (its
`ServedModel`: the verified compiled path), and reports how often the two answers agree
and how the share of each class (or each range of values, for regression) moves: the
same agreement and shift checks the live release decision runs (`decision.answer_checks`,
one look at the policy's alpha).

The report's `status` is one of:

- `pass` / `fail` / `inconclusive`: the checks' verdict (any failed: fail; all passed:
  pass; else inconclusive, e.g. too few rows to show the agreement either way);
- `no_champion`: nothing served yet, so there is no traffic to replay;
- `no_traffic`: the champion has no live rows in the log (a new deployment, or the log
  was cleared);
- `incomparable`: the logged requests lack columns the challenger needs (a contract
  change), named in the summary;
- `unavailable`: the log could not be read (the reason is in the summary).

A replay never moves an alias and never fails a release on its own: the release step
records it in the deployment manifest (`replay`) and `make run` prints it. It is
evidence, before any client sees the challenger, of how differently it will answer.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from include.ml_pipeline.release.decision import (
    FAIL,
    INCONCLUSIVE,
    PASS,
    Check,
    DecisionPolicy,
    Evidence,
    agreeing_rows,
    answer_checks,
)
from include.ml_pipeline.release.records import CHAMPION, PairedRecord

if TYPE_CHECKING:  # pragma: no cover
    from include.ml_pipeline.serving.loading.served import ServedModel

log = logging.getLogger("ml_pipeline.release")

#: the newest live rows replayed (a few milliseconds of compiled prediction)
DEFAULT_REPLAY_ROWS = 2000
NO_CHAMPION, NO_TRAFFIC, INCOMPARABLE, UNAVAILABLE = (
    "no_champion",
    "no_traffic",
    "incomparable",
    "unavailable",
)


@dataclass(frozen=True)
class ReplayReport:
    """What the replay found: `status` (see the module docstring), the rows replayed,
    the share of agreeing answers, every check and one sentence for people."""

    status: str
    rows: int
    champion_version: str | None
    challenger_version: str
    agreement: float | None
    checks: tuple[Check, ...]
    summary: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def replay_live_traffic(
    log_uri: str,
    challenger: ServedModel,
    champion_version: str | None,
    *,
    rows: int = DEFAULT_REPLAY_ROWS,
    policy: DecisionPolicy | None = None,
) -> ReplayReport:
    """Replay the champion's newest `rows` live rows on `challenger` (see the module)."""
    name, version = challenger.name, str(challenger.version)

    def report(status: str, summary: str, **facts: Any) -> ReplayReport:
        return ReplayReport(
            status=status,
            rows=facts.get("rows", 0),
            champion_version=champion_version,
            challenger_version=version,
            agreement=facts.get("agreement"),
            checks=tuple(facts.get("checks", ())),
            summary=summary,
        )

    if champion_version is None:
        return report(NO_CHAMPION, f"no champion of {name!r} yet: no live traffic to replay")
    from include.ml_pipeline.monitoring.inference_log import read_inference_log

    try:
        frame = read_inference_log(
            log_uri, model_version=champion_version, limit=rows, model_name=name
        )
    except Exception as exc:  # evidence only: the release goes on without it
        log.warning("replay of %s v%s: inference log unreadable: %s", name, version, exc)
        return report(UNAVAILABLE, f"the inference log at {log_uri} could not be read: {exc}")
    if frame.empty:
        return report(
            NO_TRAFFIC,
            f"champion v{champion_version} of {name!r} has no live requests in the "
            f"inference log ({log_uri}): nothing to replay",
        )
    missing = [c for c in challenger.spec.columns if c not in frame.columns]
    if missing:
        return report(
            INCOMPARABLE,
            f"the champion's logged requests lack column(s) {', '.join(missing)} that "
            f"v{version} needs (its input contract changed): not replayed",
            rows=len(frame),
        )
    challenger_answers = _predict(challenger, frame)
    regression = challenger.spec.is_regression
    records = [
        PairedRecord(
            request_id=f"replay-{i}",
            row=0,
            served_by=CHAMPION,
            champion_answer=champion_answer,
            challenger_answer=answer,
            champion_version=champion_version,
            challenger_version=version,
        )
        for i, (champion_answer, answer) in enumerate(
            zip(frame["prediction"].tolist(), challenger_answers, strict=True)
        )
        if champion_answer is not None
    ]
    policy = policy or DecisionPolicy()
    evidence = Evidence.of(records, regression)
    checks = answer_checks(evidence, policy)
    agreement = checks[0]
    statuses = {check.status for check in checks}
    status = FAIL if FAIL in statuses else PASS if statuses == {PASS} else INCONCLUSIVE
    agree, paired, _ = agreeing_rows(evidence, policy)
    share = agree / paired if paired else None
    return report(
        status,
        f"replayed the newest {len(records)} live rows of champion v{champion_version} on "
        f"v{version}: {agreement.reason}",
        rows=len(records),
        agreement=share,
        checks=checks,
    )


def _predict(challenger: ServedModel, frame: Any) -> list[Any]:
    """The challenger's answers for the logged rows, as the API would compute them."""
    from include.ml_pipeline.features import coerce_features
    from include.ml_pipeline.serving.batch import batch_from_frame

    spec = challenger.spec
    coerced = coerce_features(frame[list(spec.columns)], spec)
    batch = batch_from_frame(coerced, list(spec.numeric), list(spec.categorical))
    return list(challenger.predictor.predict(batch).labels)
