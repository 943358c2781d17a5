"""The API's fast start (`registry_rest.py`) against a real `mlflow server` on loopback:
the alias is resolved and the serving artifact read over the REST API, without MLflow in
the process; the fetch child then fills in the rest in the background and the artifact
is re-checked as before. Where the fast start does not apply, the MLflow path serves."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from include.ml_pipeline.serving.loading.artifact import SPEC_FILE, TAG
from include.ml_pipeline.serving.loading.load import (
    ROOT,
    LazySklearnPredictor,
    PendingLoad,
    load_served_model_isolated,
)
from include.ml_pipeline.serving.loading.registry_rest import quick_fetch
from tests.serving.loading.test_artifact_loading import _batch, _wait_for_check
from tests.support.mlflow_server import local_mlflow_server
from tests.support.models import register_model_version

NAME = "fast_start"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with local_mlflow_server(tmp_path_factory.mktemp("fast-start")) as url:
        # artifacts proxied by the server (mlflow-artifacts:/), as in the compose stack
        version = register_model_version(
            url, NAME, kind="hgb", rows=1500, seed=5, serving_artifact=True
        )
        yield url, version


def _client(url):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=url, registry_uri=url)


@pytest.mark.services  # a real `mlflow server` and the loader's child processes
def test_fast_start_serves_the_alias_version_without_importing_mlflow(server, tmp_path):
    url, version = server
    script = textwrap.dedent(
        f"""
        import json, sys
        from include.ml_pipeline.serving.loading.load import start_load
        pending = start_load({url!r}, {NAME!r}, "champion")
        served = pending.result()
        print("RESULT " + json.dumps({{
            "mlflow_imported": sorted(m for m in sys.modules if m.split(".")[0] == "mlflow"),
            "version": served.version,
            "verification": served.verification,
            "spec": served.spec.to_dict(),
        }}))
        pending.cancel()
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=str(ROOT),
        check=True,
    ).stdout
    got = json.loads(out.split("RESULT ", 1)[1])
    assert got["mlflow_imported"] == []
    assert got["version"] == version
    assert got["verification"]["resolved_by"] == "mlflow REST API"
    assert got["verification"]["source"] == "serving_artifact"

    # in this process: the background fetch fills in the contract and the pipeline, and
    # the artifact is re-checked against it; answers equal the MLflow path's
    served = load_served_model_isolated(url, NAME, "champion")
    assert served.verification["resolved_by"] == "mlflow REST API"
    assert served.spec.to_dict() == got["spec"]
    assert _wait_for_check(served) == "passed"
    assert served.contract is not None
    assert served.contract["version"] == version
    batch = _batch(served.spec)
    fast, pipeline = served.predictor.predict(batch), served.reference.predict(batch)
    assert fast.labels == pipeline.labels
    assert np.abs(fast.proba - pipeline.proba).max() < 1e-9
    assert quick_fetch(f"sqlite:///{tmp_path / 'x.db'}", NAME, "champion", tmp_path) is None


@pytest.mark.services
def test_altered_spec_file_is_not_used(server, tmp_path):
    url, version = server
    client = _client(url)
    good = client.get_model_version(NAME, version).tags[TAG]
    tag = json.loads(good)
    try:
        altered = {**tag, "sha256": {**tag["sha256"], SPEC_FILE: "0" * 64}}
        client.set_model_version_tag(NAME, version, TAG, json.dumps(altered))
        assert quick_fetch(url, NAME, "champion", tmp_path / "quick") is None
        served = load_served_model_isolated(url, NAME, "champion")
        assert served.verification["resolved_by"] == "mlflow"  # the fetch child's path
        assert served.version == version
    finally:
        client.set_model_version_tag(NAME, version, TAG, good)


class _Done:
    def poll(self):
        return 0


def test_alias_moved_before_the_fetch_child_answered_is_reported_not_mixed(tmp_path):
    """A fast start served v1; the fetch child (later) finds the alias on v2: the v1
    artifact is not re-checked against v2's pipeline, nor v2's pipeline used as v1's
    fallback; the reason says how to serve v2."""
    from types import SimpleNamespace

    pending = object.__new__(PendingLoad)
    pending.alias, pending.folder = "champion", tmp_path / "load"
    pending.fetch = pending.compile = _Done()
    pending._fetched = lambda: {"version": "2", "contract": {"version": "2"}}
    pending._run_compile = lambda info: pytest.fail("re-checked against another version")
    served = SimpleNamespace(
        version="1",
        verification={"load_check": "running"},
        reference=LazySklearnPredictor(None),
        contract=None,
    )
    pending._check_in_background(served, {"version": "1", "resolved_by": "mlflow REST API"})
    assert served.verification["load_check"].startswith("not run: the alias 'champion' names v2")
    assert served.contract is None
    with pytest.raises(Exception, match="names v2 now"):
        served.reference.predict(None)
