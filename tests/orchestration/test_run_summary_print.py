"""`make run`'s printed summary names the serving path, why a model is not compiled, and
the replay of the champion's live requests on the new version."""

from __future__ import annotations

from devtools.run_pipeline import print_summary


def _summary(fallback_reason: str | None) -> dict:
    return {
        "run_id": "manual__1",
        "state": "success",
        "seconds": 1.0,
        "data": {"rows_loaded": None, "rows_split": None},
        "model": {"version": None},
        "decision": {"deploy": None},
        "deployment": {
            "api_url": "http://127.0.0.1:8000",
            "served_version": "3",
            "predict_path": "sklearn" if fallback_reason else "compiled:onnx-hgb",
            "fallback_reason": fallback_reason,
            "rollback": None,
            "replay": {"status": "pass", "summary": "replayed the newest 40 live rows"},
        },
        "monitoring": {"drift": None, "dashboard": None},
        "notifications": [],
        "notifications_log": "/tmp/notes",
        "failures": [],
        "failed_tasks": {},
        "api": {"champion": None},
        "log": "/tmp/log",
        "summary_path": "/tmp/run_summary.json",
    }


def test_the_summary_names_the_path_and_the_reason_it_is_not_compiled(capsys):
    print_summary(_summary("no compiled form for Pipeline step 'model' (RatioBooster)"))
    out = capsys.readouterr().out
    assert "serves v3 (sklearn path)" in out
    assert "not compiled: no compiled form for Pipeline step 'model' (RatioBooster)" in out
    assert "replay    pass: replayed the newest 40 live rows" in out

    print_summary(_summary(None))
    out = capsys.readouterr().out
    assert "(compiled:onnx-hgb path)" in out
    assert "not compiled" not in out
