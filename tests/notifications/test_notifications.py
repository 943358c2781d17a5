"""Notifications against real receivers: Slack webhook over HTTP, e-mail over SMTP."""

from __future__ import annotations

import json
import re

import pytest

from include.ml_pipeline.notifications import (
    EVENT_REJECTED,
    Notification,
    describe_outcomes,
    read_log,
)
from include.ml_pipeline.orchestration.alerts import airflow_run_url, send_notification
from include.ml_pipeline.storage import list_files
from tests.notifications.conftest import deployed

TOKEN_PATH = "/services/T000/B000/secret-token"


def test_renderings_carry_model_metrics_reasons_and_links():
    note = deployed()
    text = note.to_text()
    assert text.startswith("[DEPLOYED] tabular_classifier v7 is live")
    assert "Model: tabular_classifier v7" in text
    assert "roc_auc=0.8612" in text
    assert "  - beats champion v6 by 0.011" in text
    assert "MLflow run: http://127.0.0.1:5000/#/experiments/1/runs/abc123" in text
    markdown = note.to_markdown()
    assert "| roc_auc | 0.8612 |" in markdown
    assert "[Model API](http://127.0.0.1:8000)" in markdown
    assert note.subject == "[ml-pipeline] DEPLOYED: tabular_classifier v7 is live"
    assert note.severity == "info"
    assert json.loads(note.to_json())["version"] == "7"


def test_slack_and_html_renderings_escape_user_text():
    note = Notification(
        event=EVENT_REJECTED,
        title="v8 <rejected> & kept v7",
        model_name="m",
        version=8,
        reasons=["accuracy <b>0.5</b> < 0.7"],
        api_url="javascript:alert(1)",
    )
    slack = note.to_slack_text()
    assert "v8 &lt;rejected&gt; &amp; kept v7" in slack
    assert "<b>" not in slack
    assert "<javascript" not in slack  # not turned into a Slack link
    html = note.to_html()
    assert "&lt;b&gt;0.5&lt;/b&gt;" in html
    assert "<b>0.5</b>" not in html
    assert 'href="javascript' not in html
    assert note.severity == "warning"


def test_slack_webhook_receives_payload_and_the_record_is_an_object(
    webhook_receiver, connections, tmp_path
):
    connections(slack_url=webhook_receiver.url)
    log_uri = tmp_path / "notifications"
    outcomes = send_notification(deployed(), slack_conn_id="slack_test", log_uri=log_uri)

    assert outcomes["slack"]["status"] == "sent", outcomes
    assert outcomes["email"] == {"status": "skipped", "detail": "not configured"}
    assert outcomes["log"]["status"] == "sent"
    (record,) = list_files(log_uri)
    assert outcomes["log"]["detail"] == record
    assert re.fullmatch(r"\d{8}T\d{12}Z-deployed-[0-9a-f]{8}\.json", record.rsplit("/", 1)[-1])
    assert len(webhook_receiver.requests) == 1
    request = webhook_receiver.requests[0]
    assert request["path"] == TOKEN_PATH
    assert request["content_type"].startswith("application/json")
    text = request["json"]["text"]
    assert "tabular_classifier v7" in text
    assert "roc_auc=0.8612" in text
    assert "accuracy=0.8033" in text
    assert "beats champion v6" in text
    assert "<http://127.0.0.1:8000|Model API>" in text
    assert request["json"]["blocks"][0]["text"]["text"] == text

    lines = read_log(log_uri)
    assert len(lines) == 1
    assert lines[0]["event"] == "deployed"
    assert lines[0]["version"] == "7"
    assert lines[0]["metrics"]["roc_auc"] == pytest.approx(0.86123)
    assert lines[0]["channels"]["slack"]["status"] == "sent"


def test_email_is_received_by_smtp_server(smtp_receiver, connections, tmp_path):
    connections(smtp_port=smtp_receiver.port)
    outcomes = send_notification(
        deployed(),
        smtp_conn_id="smtp_test",
        email_to="ops@example.org, ml@example.org",
        log_uri=tmp_path / "n",
    )
    assert outcomes["email"]["status"] == "sent", outcomes
    assert outcomes["slack"]["status"] == "skipped"
    assert len(smtp_receiver.messages) == 1
    mail_from, recipients, message = smtp_receiver.messages[0]
    assert mail_from == "ml-pipeline@example.org"
    assert recipients == ["ops@example.org", "ml@example.org"]
    assert message["Subject"] == "[ml-pipeline] DEPLOYED: tabular_classifier v7 is live"
    assert message["X-ML-Pipeline-Event"] == "deployed"
    body = next(p for p in message.walk() if p.get_content_type() == "text/html")
    html = body.get_payload(decode=True).decode("utf-8")
    assert "tabular_classifier v7" in html
    assert "<td>roc_auc</td><td>0.8612</td>" in html
    assert 'href="http://127.0.0.1:5000/#/experiments/1/runs/abc123"' in html
    assert read_log(tmp_path / "n")[0]["channels"]["email"]["status"] == "sent"


def test_both_channels_at_once(webhook_receiver, smtp_receiver, connections, tmp_path):
    connections(slack_url=webhook_receiver.url, smtp_port=smtp_receiver.port)
    outcomes = send_notification(
        deployed(),
        slack_conn_id="slack_test",
        smtp_conn_id="smtp_test",
        email_to=["ops@example.org"],
        log_uri=tmp_path / "n",
    )
    assert {k: v["status"] for k, v in outcomes.items()} == {
        "slack": "sent",
        "email": "sent",
        "apprise": "skipped",
        "jira": "skipped",
        "log": "sent",
    }
    assert len(webhook_receiver.requests) == 1
    assert len(smtp_receiver.messages) == 1


def test_servers_down_are_recorded_as_failed_and_nothing_raises(connections, unused_port, tmp_path):
    connections(slack_url=f"http://127.0.0.1:{unused_port()}", smtp_port=unused_port())
    log_uri = tmp_path / "n"
    outcomes = send_notification(
        deployed(),
        slack_conn_id="slack_test",
        smtp_conn_id="smtp_test",
        email_to=["ops@example.org"],
        log_uri=log_uri,
        timeout=3,
    )
    assert outcomes["slack"]["status"] == "failed", outcomes
    assert outcomes["email"]["status"] == "failed", outcomes
    assert (
        "Connection refused" in outcomes["email"]["detail"]
        or "Errno" in (outcomes["email"]["detail"])
    )
    assert outcomes["log"]["status"] == "sent"
    (line,) = read_log(log_uri)
    assert line["channels"]["slack"]["status"] == "failed"
    assert line["channels"]["email"]["status"] == "failed"
    assert "failed" in describe_outcomes(outcomes)


def test_webhook_error_status_is_failed_and_secret_is_masked(
    webhook_receiver, connections, tmp_path
):
    webhook_receiver.status = 403
    connections(slack_url=webhook_receiver.url)
    outcomes = send_notification(deployed(), slack_conn_id="slack_test", log_uri=tmp_path / "n")
    assert outcomes["slack"]["status"] == "failed"
    assert "403" in outcomes["slack"]["detail"]
    assert "secret-token" not in json.dumps(outcomes)
    (record,) = (tmp_path / "n").iterdir()
    assert "403" in record.read_text()
    assert "secret-token" not in record.read_text()


def test_unconfigured_and_undefined_channels_are_skipped(monkeypatch, tmp_path):
    monkeypatch.delenv("AIRFLOW_CONN_NO_SUCH_SLACK", raising=False)
    outcomes = send_notification(deployed(), log_uri=tmp_path / "n")
    assert outcomes["slack"] == {"status": "skipped", "detail": "not configured"}
    assert outcomes["email"] == {"status": "skipped", "detail": "not configured"}
    outcomes = send_notification(
        deployed(),
        slack_conn_id="no_such_slack",
        smtp_conn_id="smtp_test",
        email_to=None,
        log_uri=tmp_path / "n",
    )
    assert outcomes["slack"]["status"] == "skipped"
    assert "no_such_slack" in outcomes["slack"]["detail"]
    assert outcomes["email"] == {"status": "skipped", "detail": "no recipients"}
    assert len(read_log(tmp_path / "n")) == 2


def test_records_are_read_back_in_the_order_they_were_written(tmp_path):
    for version in range(1, 13):
        note = deployed()
        note.version = str(version)
        send_notification(note, log_uri=tmp_path / "n")
    assert [n["version"] for n in read_log(tmp_path / "n")] == [str(v) for v in range(1, 13)]
    assert [n["version"] for n in read_log(tmp_path / "n", limit=2)] == ["11", "12"]
    assert read_log(tmp_path / "n", limit=0) == []
    assert read_log(tmp_path / "nothing here") == []


def test_record_write_failure_raises(tmp_path):
    (tmp_path / "a file").write_text("not a folder")
    with pytest.raises(NotADirectoryError, match="ML_PIPELINE_NOTIFICATIONS"):
        send_notification(deployed(), log_uri=tmp_path / "a file")


def test_default_location_is_under_the_storage_root(monkeypatch, tmp_path):
    monkeypatch.setenv("ML_PIPELINE_STORAGE", str(tmp_path / "root"))
    monkeypatch.delenv("ML_PIPELINE_NOTIFICATIONS", raising=False)
    outcomes = send_notification(deployed())
    folder = (tmp_path / "root" / "notifications").as_uri()
    assert outcomes["log"]["detail"].startswith(folder + "/")
    assert read_log()[0]["title"] == "tabular_classifier v7 is live"
    monkeypatch.setenv("ML_PIPELINE_NOTIFICATIONS", str(tmp_path / "elsewhere"))
    send_notification(deployed())
    assert len(read_log()) == 1
    assert len(list_files(tmp_path / "elsewhere")) == 1


def test_airflow_run_url_points_at_the_run_in_this_lines_ui():
    from include.ml_pipeline.orchestration.compat import AIRFLOW_3

    url = airflow_run_url(
        "ml_model_deployment_advanced", "scheduled__2026-11-27T00:00:00+00:00", "http://af:8080/"
    )
    run = "scheduled__2026-11-27T00%3A00%3A00%2B00%3A00"
    if AIRFLOW_3:
        assert url == f"http://af:8080/dags/ml_model_deployment_advanced/runs/{run}"
    else:
        assert url == f"http://af:8080/dags/ml_model_deployment_advanced/grid?dag_run_id={run}"
    assert airflow_run_url("d", "r", "") is None
