"""Step of `decidir_despliegue`: the deploy gate, recorded on the version, as a branch."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from include.ml_pipeline.config import get_settings
from include.ml_pipeline.contracts.names import DECISION_XCOM_KEY
from include.ml_pipeline.contracts.payloads import DecidedModel, RegisteredModel
from include.ml_pipeline.orchestration.params import gate_thresholds

log = logging.getLogger(__name__)


def decide(
    registered: dict, params: Mapping[str, Any], ti: Any, *, deploy_to: str, reject_to: str
) -> str:
    """Deploy only if the challenger clears the thresholds and does not lose to the
    champion on the same test split. The decision goes to the version's tags, and with the
    registered model to XCom key `decision` (what either path reads). Returns the task id
    to follow."""
    from include.ml_pipeline.registry.decision import Thresholds, decide_deployment
    from include.ml_pipeline.registry.registry import record_decision

    model = RegisteredModel.from_dict(registered)
    decision = decide_deployment(
        model.metrics,
        model.champion_metrics,
        Thresholds.from_dict(gate_thresholds(params)),
        champion_error=model.champion_error,
    )
    record_decision(
        model.model_name,
        model.version,
        decision,
        tracking_uri=get_settings().mlflow_tracking_uri,
    )
    for reason in decision.reasons:
        log.info("decision reason: %s", reason)
    ti.xcom_push(key=DECISION_XCOM_KEY, value=DecidedModel(model, decision).to_dict())
    return deploy_to if decision.deploy else reject_to

