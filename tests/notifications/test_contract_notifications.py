"""What the deployed and rejected notifications say about an input-contract change, and
the decision step's comparison with the champion's contract."""

from __future__ import annotations

from include.ml_pipeline.features import FeatureSpec
from include.ml_pipeline.notifications import events
from include.ml_pipeline.payloads import Decision, RegisteredModel, SplitResult

SPLIT = SplitResult(uris={}, rows={}, class_counts={}, seed=1, feature_spec=FeatureSpec(target="y"))


def _model(**extra) -> RegisteredModel:
    fields = {"champion_version": "3", **extra}
    return RegisteredModel(
        model_name="m",
        version="4",
        run_id="r",
        model_uri="models:/m/4",
        metrics={"roc_auc": 0.8},
        champion_metrics=None,
        champion_error=None,
        candidate="c",
        version_info={},
        split=SPLIT,
        **fields,
    )


CHANGES = [
    "column 'age' is no longer an input (clients: stop sending 'age')",
    "new column 'noise' would be required (clients: send 'noise' as a number (or null))",
]


def test_deployed_with_an_allowed_change_says_what_clients_must_change_first():
    note = events.deployed(
        _model(), Decision(True, ["Deploy: ..."], CHANGES), api_url="http://api", dashboard=None
    )
    assert note.title == "m v4 is live as champion with a CHANGED INPUT CONTRACT"
    assert note.reasons[0].startswith("Clients must change (2 contract changes allowed")
    assert note.reasons[1] == f"contract change: {CHANGES[0]}"
    assert "stop sending 'age'" in note.to_text()
    assert note.details["contract_changes"].startswith("column 'age'")


def test_deployed_without_a_change_is_as_before():
    note = events.deployed(_model(), Decision(True, ["Deploy: ok."]), api_url=None, dashboard=None)
    assert note.title == "m v4 is live as champion"
    assert note.reasons == ["Deploy: ok."]
    assert "contract_changes" not in note.details


def test_rejected_for_a_change_names_the_differences():
    note = events.rejected(_model(), Decision(False, ["Reject: contract."], CHANGES))
    assert note.reasons == ["Reject: contract."]
    assert "'noise' would be required" in note.details["contract_changes"]


def test_no_champion_means_no_contract_comparison():
    from include.ml_pipeline.orchestration.steps.deployment_dag.decision import (
        compare_with_champion,
    )

    assert compare_with_champion(_model(champion_version=None), "sqlite:///x.db") is None
    missing = compare_with_champion(_model(), "sqlite:///x.db")
    assert missing.compared is False
    assert missing.note == "the challenger has no recorded input contract"
