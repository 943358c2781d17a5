"""Step of `decidir_despliegue`: the deploy gate, recorded on the version, as a branch."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from include.ml_pipeline.config import get_settings
from include.ml_pipeline.names import CONTRACT_CHANGES_TAG, DECISION_XCOM_KEY
from include.ml_pipeline.orchestration.params import gate_thresholds
from include.ml_pipeline.payloads import DecidedModel, RegisteredModel

log = logging.getLogger(__name__)


def compare_with_champion(model: RegisteredModel, tracking_uri: str):
    """The challenger's input contract against the champion's (`ContractComparison`), or
    None when there is no champion."""
    from include.ml_pipeline.registry.contract import (
        ContractComparison,
        compare,
        load_contract,
    )

    champion = model.champion_version
    if not champion or champion == model.version:
        return None
    if not model.contract:
        return ContractComparison(
            champion, compared=False, note="the challenger has no recorded input contract"
        )
    try:
        theirs = load_contract(tracking_uri, model.model_name, champion)
    except Exception as exc:  # the registry answered, but not with a readable contract
        theirs, why = None, f"{type(exc).__name__}: {exc}"
    else:
        why = "the champion has no input contract and no feature spec"
    if theirs is None:
        return ContractComparison(champion, compared=False, note=f"it cannot be read ({why})")
    return compare(champion, theirs, model.contract)


def decide(
    registered: dict, params: Mapping[str, Any], ti: Any, *, deploy_to: str, reject_to: str
) -> str:
    """Deploy only if the challenger beats the class-prior baseline, clears the optional
    thresholds, does not lose to the champion on the same test split and keeps the
    champion's input contract (unless `allow_contract_change`). The decision goes to the
    version's tags, and with the registered model to XCom key `decision` (what either path
    reads). Returns the task id to follow."""
    from include.ml_pipeline.problem import resolve_metric
    from include.ml_pipeline.registry.decision import Thresholds, decide_deployment
    from include.ml_pipeline.registry.registry import record_decision

    tracking_uri = get_settings().mlflow_tracking_uri
    model = RegisteredModel.from_dict(registered)
    problem_type = model.split.feature_spec.problem_type
    settings = gate_thresholds(params)
    if "primary_metric" in settings:
        settings["primary_metric"] = resolve_metric(
            settings["primary_metric"], problem_type, "primary_metric"
        )
    thresholds = Thresholds.from_dict(settings)
    decision = decide_deployment(
        model.metrics,
        model.champion_metrics,
        thresholds,
        champion_error=model.champion_error,
        baseline_metrics=model.baseline_metrics,
        contract=compare_with_champion(model, tracking_uri),
        problem_type=problem_type,
    )
    extra = {CONTRACT_CHANGES_TAG: decision.contract_changes} if decision.contract_changes else {}
    record_decision(
        model.model_name,
        model.version,
        decision,
        tracking_uri=tracking_uri,
        extra=extra,
    )
    for reason in decision.reasons:
        log.info("decision reason: %s", reason)
    ti.xcom_push(key=DECISION_XCOM_KEY, value=DecidedModel(model, decision).to_dict())
    return deploy_to if decision.deploy else reject_to
