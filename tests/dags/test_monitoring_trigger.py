"""The retraining trigger of `ml_model_monitoring`: Airflow's own TriggerDagRunOperator
for `ml_model_deployment_advanced`, with its conf, in the Graph and Dependencies views; and
on Airflow 3 imported without the metadata database's models, which it needs only at
execute time (`compat._import_deferring`), so that parsing the DAG file stays cheap."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from include.ml_pipeline.names import DEPLOYMENT_DAG_ID, MONITORING_DAG_ID
from include.ml_pipeline.orchestration import compat

ROOT = Path(__file__).resolve().parents[2]
MONITORING_FILE = ROOT / "dags" / "ml_model_monitoring.py"


@pytest.fixture(scope="module")
def monitoring(airflow_db):
    bag = compat.dag_bag(str(MONITORING_FILE))
    assert not bag.import_errors, bag.import_errors
    return bag.dags[MONITORING_DAG_ID]


def test_the_trigger_is_airflows_operator_for_the_deployment_dag(monitoring):
    trigger = monitoring.get_task("trigger_retraining")
    assert type(trigger) is compat.TriggerDagRunOperator
    assert type(trigger).__module__ == (
        "airflow.providers.standard.operators.trigger_dagrun"
        if compat.AIRFLOW_3
        else "airflow.operators.trigger_dagrun"
    )
    assert trigger.trigger_dag_id == DEPLOYMENT_DAG_ID
    assert trigger.trigger_run_id == "retrain__{{ run_id }}"
    assert trigger.skip_when_already_exists is True
    assert trigger.wait_for_completion is False
    # the conf is the return value of prepare_retraining, which runs right before it
    assert trigger.conf.operator.task_id == "prepare_retraining"
    assert trigger.upstream_task_ids == {"prepare_retraining"}


def test_the_scheduler_and_the_ui_see_the_trigger(monitoring):
    serialized = compat.serialize_dag(monitoring)["dag"]
    dependencies = json.dumps(serialized["dag_dependencies"])
    assert DEPLOYMENT_DAG_ID in dependencies
    assert '"trigger"' in dependencies
    tasks = [t.get("__var", t) for t in serialized["tasks"]]
    (task,) = [t for t in tasks if t["task_id"] == "trigger_retraining"]
    assert "TriggerDagRunOperator" in json.dumps(task)
    assert "TriggerDagRunLink" in json.dumps(task)  # the "Triggered DAG" button


_FRESH_PARSE = textwrap.dedent(
    """
    import importlib.util, json, sys

    spec = importlib.util.spec_from_file_location("monitoring_dag", sys.argv[1])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    report = {"loaded": sorted(m for m in json.loads(sys.argv[2]) if m in sys.modules)}

    from include.ml_pipeline.orchestration import compat
    from include.ml_pipeline.orchestration.compat import serialize_dag

    dag = getattr(module, sys.argv[3])()  # the @dag factory: the same DAG again
    serialized = serialize_dag(dag)
    report["dependencies"] = json.dumps(serialized["dag"]["dag_dependencies"])

    provider = sys.modules[compat.TriggerDagRunOperator.__module__]
    from airflow.models import DagRun  # the real mapped class, not a stand-in
    report["models_dagrun_table"] = DagRun.__table__.name
    operator = compat.TriggerDagRunOperator(task_id="t", trigger_dag_id="other", conf={"a": 1})
    try:
        operator.execute({"ti": None})  # no run id given: DagRun.generate_run_id is used
    except Exception as raised:  # Airflow 3 hands the trigger to the task runner this way
        report["raised"] = type(raised).__name__
        report["trigger"] = [raised.trigger_dag_id, raised.conf, raised.dag_run_id]
    report["rebound"] = provider.DagRun is DagRun
    print(json.dumps(report))
    """
)


@pytest.mark.skipif(not compat.AIRFLOW_3, reason="the deferred import is for Airflow 3's provider")
def test_parsing_the_dag_file_imports_no_database_model():
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            _FRESH_PARSE,
            str(MONITORING_FILE),
            json.dumps(compat._TRIGGER_DAGRUN_EXECUTE_TIME),
            MONITORING_DAG_ID,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["loaded"] == [], f"imported while parsing: {report['loaded']}"
    # and yet everything behaves as with a plain import
    assert DEPLOYMENT_DAG_ID in report["dependencies"]
    assert "trigger" in report["dependencies"]
    assert report["models_dagrun_table"] == "dag_run"
    assert report["raised"] == "DagRunTriggerException"
    assert report["trigger"][:2] == ["other", {"a": 1}]
    assert report["trigger"][2]  # a generated run id
    assert report["rebound"] is True


def _write(directory: Path, name: str, text: str) -> None:
    (directory / f"{name}.py").write_text(textwrap.dedent(text))


@pytest.fixture
def modules(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    _write(
        tmp_path,
        "h6_heavy",
        """
        class Heavy:
            made = 0

            def __init__(self, size=1):
                self.size = size
                Heavy.made += 1
        """,
    )
    _write(
        tmp_path,
        "h6_light",
        """
        from h6_heavy import Heavy

        def make(size):
            return Heavy(size)
        """,
    )
    _write(tmp_path, "h6_eager", "from h6_heavy import Heavy\nSIZE = Heavy.made\n")
    _write(tmp_path, "h6_broken", "from h6_heavy import Heavy\nraise ValueError('h6 broken')\n")
    yield
    for name in ("h6_heavy", "h6_light", "h6_eager", "h6_broken"):
        sys.modules.pop(name, None)


def test_a_deferred_import_happens_at_first_use_and_binds_the_real_object(modules):
    light = compat._import_deferring("h6_light", ("h6_heavy",))
    assert "h6_heavy" not in sys.modules
    made = light.make(3)
    import h6_heavy

    assert type(made) is h6_heavy.Heavy
    assert made.size == 3
    assert light.Heavy is h6_heavy.Heavy  # rebound: later calls are plain ones
    assert isinstance(made, light.Heavy)


def test_a_deferred_name_used_at_import_time_falls_back_to_a_plain_import(modules):
    eager = compat._import_deferring("h6_eager", ("h6_heavy",))
    import h6_heavy

    assert eager.Heavy is h6_heavy.Heavy
    assert eager.SIZE == 0


def test_an_import_error_is_the_modules_own(modules):
    with pytest.raises(ValueError, match="h6 broken"):
        compat._import_deferring("h6_broken", ("h6_heavy",))
    assert "h6_broken" not in sys.modules
