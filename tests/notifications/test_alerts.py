"""Alerts beyond Slack and e-mail, against real receivers on loopback: Apprise (through its
Airflow provider's connection) to `json://` and to Teams Workflows (`workflows://`, an
Adaptive Card over HTTPS), routed by tag; Jira tickets for failures; a dead endpoint is a
failed task, and the local record is written first and kept."""

from __future__ import annotations

import json
import os
from urllib.parse import parse_qs, urlsplit

import pytest

from include.ml_pipeline.notifications import (
    EVENT_FAILED,
    EVENT_RELEASE,
    Notification,
    read_log,
)
from include.ml_pipeline.notifications.routing import alert_tags, wants_ticket
from include.ml_pipeline.orchestration.alerts import deliver, send_notification
from include.ml_pipeline.payloads import Notified
from tests.notifications.conftest import apprise_connection, deployed, jira_connection

WORKFLOW_ID = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
SIGNATURE = "s3cr3t-Sig_nature0123456789"


def failed() -> Notification:
    return Notification(
        event=EVENT_FAILED,
        title="ml_model_deployment_advanced: run manual__2026-11-27 failed at pruebas_api",
        reasons=["failed task: despliegue_modelo.pruebas_api: SmokeTestError: p95 61 ms > 50"],
        dag_id="ml_model_deployment_advanced",
        run_id="manual__2026-11-27",
        task_id="despliegue_modelo.pruebas_api",
        error="SmokeTestError: p95 61 ms > 50",
    )


def json_url(receiver, path: str) -> str:
    return f"json://127.0.0.1:{receiver.port}/{path}"


def test_routing_by_event_and_severity_including_a_release_verdict():
    assert alert_tags(deployed()) == ["deployed", "info"]
    assert alert_tags(failed()) == ["failed", "error"]
    verdicts = {
        verdict: Notification(event=EVENT_RELEASE, title="v8 canary", details={"verdict": verdict})
        for verdict in ("pass", "inconclusive", "fail")
    }
    assert [alert_tags(n) for n in verdicts.values()] == [
        ["release", "info"],
        ["release", "warning"],
        ["release", "error"],
    ]
    assert [wants_ticket(n) for n in verdicts.values()] == [False, False, True]
    assert wants_ticket(failed())
    assert not wants_ticket(deployed())


def test_apprise_sends_to_the_urls_tagged_with_the_event_or_its_severity(
    webhook_receiver, monkeypatch, tmp_path
):
    monkeypatch.setenv(
        "AIRFLOW_CONN_APPRISE_TEST",
        apprise_connection(
            (json_url(webhook_receiver, "deployments"), "deployed"),
            (json_url(webhook_receiver, "pager"), "error"),
            (json_url(webhook_receiver, "channel"), "info, warning, error"),
            (json_url(webhook_receiver, "drift-only"), "drift"),
        ),
    )
    outcomes = send_notification(deployed(), apprise_conn_id="apprise_test", log_uri=tmp_path)

    assert outcomes["apprise"]["status"] == "sent", outcomes
    assert "2 URL(s) tagged deployed, info" in outcomes["apprise"]["detail"]
    assert sorted(r["path"] for r in webhook_receiver.requests) == ["/channel", "/deployments"]
    body = webhook_receiver.requests[0]["json"]
    assert body["title"] == "[ml-pipeline] DEPLOYED: tabular_classifier v7 is live"
    assert body["type"] == "success"
    assert "**Model:** `tabular_classifier v7`" in body["message"]
    assert "roc_auc=0.8612" in body["message"]
    assert "- beats champion v6 by 0.011" in body["message"]
    assert "[MLflow run](http://127.0.0.1:5000/#/experiments/1/runs/abc123)" in body["message"]
    (record,) = read_log(tmp_path)
    assert record["channels"]["apprise"]["status"] == "sent"

    webhook_receiver.requests.clear()
    outcomes = send_notification(failed(), apprise_conn_id="apprise_test", log_uri=tmp_path)
    assert outcomes["apprise"]["status"] == "sent", outcomes
    assert sorted(r["path"] for r in webhook_receiver.requests) == ["/channel", "/pager"]
    assert {r["json"]["type"] for r in webhook_receiver.requests} == {"failure"}


# The receiver's certificate is self-signed (`verify=no` in the URL): urllib3 says so.
@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_teams_workflows_receives_an_adaptive_card(tls_receiver, monkeypatch, tmp_path):
    """Apprise's `workflows://` URL, pointed at a loopback HTTPS receiver (self-signed:
    `verify=no`), posts the Adaptive Card that a Teams Workflows webhook takes."""
    url = f"workflows://127.0.0.1:{tls_receiver.port}/{WORKFLOW_ID}/{SIGNATURE}/?verify=no"
    monkeypatch.setenv("AIRFLOW_CONN_APPRISE_TEST", apprise_connection((url, "info,error")))
    outcomes = send_notification(deployed(), apprise_conn_id="apprise_test", log_uri=tmp_path)

    assert outcomes["apprise"]["status"] == "sent", outcomes
    assert SIGNATURE not in json.dumps(outcomes)  # Apprise's privacy URL in the detail
    (request,) = tls_receiver.requests
    where = urlsplit(request["path"])
    assert where.path == f"/workflows/{WORKFLOW_ID}/triggers/manual/paths/invoke"
    assert parse_qs(where.query)["sig"] == [SIGNATURE]
    card = request["json"]
    (attachment,) = card["attachments"]
    assert card["type"] == "message"
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    content = attachment["content"]
    assert content["type"] == "AdaptiveCard"
    assert content["version"] == "1.4"
    blocks = {block.get("id"): block for block in content["body"]}
    assert blocks["title"]["text"] == "[ml-pipeline] DEPLOYED: tabular_classifier v7 is live"
    text = blocks["body"]["text"]
    assert "**Model:** `tabular_classifier v7`" in text
    assert "**Metrics:** roc_auc=0.8612, accuracy=0.8033, log_loss=0.4100" in text
    assert "[Model API](http://127.0.0.1:8000)" in text
    assert "|" not in text  # no Markdown table: Adaptive Cards do not render them
    card_file = os.environ.get("TEAMS_CARD_OUT")
    if card_file:  # the card, for the README and reviews
        with open(card_file, "w") as handle:
            json.dump(card, handle, indent=2)


def test_a_dead_endpoint_fails_the_task_and_the_record_is_kept(
    webhook_receiver, unused_port, monkeypatch, tmp_path
):
    """One URL refuses connections, one answers 500, one works: the working one is sent,
    the record (written before delivery) names both failures, and the task fails once."""
    from include.ml_pipeline.orchestration.compat import AirflowFailException

    seen_during_delivery = []
    dead_port = unused_port()
    webhook_receiver.on_request = lambda: seen_during_delivery.extend(read_log(tmp_path))
    monkeypatch.setenv(
        "AIRFLOW_CONN_APPRISE_TEST",
        apprise_connection(
            (f"json://127.0.0.1:{dead_port}/dead", "error"),
            (json_url(webhook_receiver, "works"), "failed"),
        ),
    )
    monkeypatch.setenv("ML_PIPELINE_NOTIFICATIONS", str(tmp_path))
    params = {"slack_conn_id": None, "smtp_conn_id": None, "apprise_conn_id": "apprise_test"}

    with pytest.raises(AirflowFailException) as raised:
        deliver(failed(), params)

    message = str(raised.value)
    assert "was not delivered on 1 channel(s): apprise: 1 of 2 URLs" in message
    assert f"json://127.0.0.1:{dead_port}/dead" in message
    (record,) = read_log(tmp_path)
    assert f"recorded in {(tmp_path / '').as_uri()}" in message
    assert record["channels"]["apprise"]["status"] == "failed"
    assert "/dead" in record["channels"]["apprise"]["detail"]
    assert record["channels"]["log"]["status"] == "sent"
    assert [r["path"] for r in webhook_receiver.requests] == ["/works"]
    # The record existed before any channel was tried, its channels pending.
    (before,) = seen_during_delivery
    assert before["channels"]["apprise"] == {"status": "pending", "detail": ""}
    assert before["title"] == record["title"]

    webhook_receiver.status = 500
    outcomes = send_notification(failed(), apprise_conn_id="apprise_test", log_uri=tmp_path)
    assert outcomes["apprise"]["status"] == "failed"
    assert "2 of 2 URLs" in outcomes["apprise"]["detail"]
    assert "500" in outcomes["apprise"]["detail"]


def test_a_delivered_notification_returns_its_outcomes(webhook_receiver, monkeypatch, tmp_path):
    monkeypatch.setenv(
        "AIRFLOW_CONN_APPRISE_TEST",
        apprise_connection((json_url(webhook_receiver, "all"), "always")),
    )
    monkeypatch.setenv("ML_PIPELINE_NOTIFICATIONS", str(tmp_path))
    notified = Notified.from_dict(deliver(deployed(), {"apprise_conn_id": "apprise_test"}))
    assert notified.event == "deployed"
    assert notified.outcomes["apprise"]["status"] == "sent"
    assert notified.outcomes["slack"] == {"status": "skipped", "detail": "not configured"}
    assert len(webhook_receiver.requests) == 1  # `always`: every event


def test_no_url_tagged_for_the_event_is_skipped_and_a_bad_config_is_failed(
    webhook_receiver, monkeypatch, tmp_path
):
    monkeypatch.setenv(
        "AIRFLOW_CONN_APPRISE_TEST",
        apprise_connection((json_url(webhook_receiver, "pager"), "error")),
    )
    outcomes = send_notification(deployed(), apprise_conn_id="apprise_test", log_uri=tmp_path)
    assert outcomes["apprise"] == {
        "status": "skipped",
        "detail": "no URL of connection apprise_test is tagged deployed, info",
    }
    assert webhook_receiver.requests == []

    monkeypatch.setenv(
        "AIRFLOW_CONN_APPRISE_TEST", json.dumps({"conn_type": "apprise", "extra": {}})
    )
    outcomes = send_notification(deployed(), apprise_conn_id="apprise_test", log_uri=tmp_path)
    assert outcomes["apprise"]["status"] == "failed"
    assert "extra `config` must be an Apprise URL with tags" in outcomes["apprise"]["detail"]
    outcomes = send_notification(deployed(), apprise_conn_id="no_such_apprise", log_uri=tmp_path)
    assert outcomes["apprise"] == {
        "status": "skipped",
        "detail": "connection 'no_such_apprise' is not defined",
    }


def test_jira_opens_a_ticket_for_a_failure_only(webhook_receiver, monkeypatch, tmp_path):
    webhook_receiver.status = 201
    webhook_receiver.answer = b'{"id": "10001", "key": "ML-42", "self": "http://jira/10001"}'
    webhook_receiver.content_type = "application/json"
    monkeypatch.setenv("AIRFLOW_CONN_JIRA_TEST", jira_connection(webhook_receiver.url))

    outcomes = send_notification(failed(), jira_conn_id="jira_test", log_uri=tmp_path)
    assert outcomes["jira"] == {"status": "sent", "detail": "connection jira_test: issue ML-42"}
    (request,) = webhook_receiver.requests
    assert request["path"].startswith("/rest/api/2/issue")
    assert request["authorization"].startswith("Basic ")
    fields = request["json"]["fields"]
    assert fields["project"] == {"key": "ML"}
    assert fields["issuetype"] == {"name": "Bug"}
    assert fields["summary"].startswith("[ml-pipeline] FAILED: ml_model_deployment_advanced")
    assert "Error: SmokeTestError: p95 61 ms > 50" in fields["description"]
    assert fields["labels"] == ["ml-pipeline", "failed"]
    assert read_log(tmp_path)[0]["channels"]["jira"]["detail"].endswith("ML-42")

    outcomes = send_notification(deployed(), jira_conn_id="jira_test", log_uri=tmp_path)
    assert outcomes["jira"] == {"status": "skipped", "detail": "no ticket for a info notification"}
    assert len(webhook_receiver.requests) == 1

    webhook_receiver.status = 400
    outcomes = send_notification(failed(), jira_conn_id="jira_test", log_uri=tmp_path)
    assert outcomes["jira"]["status"] == "failed"
    assert "jira-api-token" not in outcomes["jira"]["detail"]

    monkeypatch.setenv("AIRFLOW_CONN_JIRA_TEST", jira_connection(webhook_receiver.url, None))
    outcomes = send_notification(failed(), jira_conn_id="jira_test", log_uri=tmp_path)
    assert outcomes["jira"]["status"] == "failed"
    assert '{"project": "<project key>"' in outcomes["jira"]["detail"]
