"""The model API's fast start: resolve `models:/<name>@<alias>` and download the version's
serving artifact (`artifact.py`) over MLflow's REST API with the standard library alone,
so the API can serve before the fetch child (`fetch.py`) has even imported MLflow
(`import mlflow` plus its store: most of a restart's time).

Used only when all of these hold, else `quick_fetch` returns None and the load waits for
the fetch child as before:

- the tracking URI is `http(s)://` (an `mlflow server`, as in the compose stack) with
  no credentials but `MLFLOW_TRACKING_TOKEN` or `MLFLOW_TRACKING_USERNAME`/`_PASSWORD`;
- the alias's version has a serving artifact of this API's format that lists its
  feature spec (`feature_spec.json`, written by the release step since issue 22);
- the run's artifacts are on the server (`mlflow-artifacts:/`, `--serve-artifacts`) or
  in a local folder;
- `MODEL_API_FAST_START` is not `false` (the benchmark's start-up comparison).

The guarantees stay those of the fetch child's path: the version served is the one the
alias names now (asked of the registry at start), and every file is checked against the
sha256 the version's tag records (`read_predictor` for the predictor files, here for
the feature spec). The fetch child still runs, in the background: it downloads the
pipeline for the compile child's re-check and fills in the input contract.

Measured (issue 22, `bench_model_api.py --registry server --duration 0 --peers mlflow
--repeat 3`, shared 2-core machine at load ~15): process start to first healthy answer,
ours 4.3-5.2 s, ours with `MODEL_API_FAST_START=false` 15.2-20.9 s, `mlflow models serve`
24.4-40.3 s: ours / MLflow 0.11-0.21 per run, with it off 0.52-0.62. (An earlier run at
load ~11, medians: 4.5 s, 8.7 s with it off, 16.1 s for MLflow.)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any
from urllib.error import URLError
from urllib.parse import quote, urlencode
from urllib.request import Request, urlopen

from include.ml_pipeline.config import tracking_auth_headers

log = logging.getLogger("ml_pipeline.serving")

#: MLflow client settings this module does not implement: with any of them set, MLflow
#: itself (the fetch child) talks to the server
UNSUPPORTED_ENV = (
    "MLFLOW_TRACKING_AUTH",
    "MLFLOW_TRACKING_CLIENT_CERT_PATH",
    "MLFLOW_TRACKING_SERVER_CERT_PATH",
    "MLFLOW_TRACKING_INSECURE_TLS",
    "MLFLOW_TRACKING_AWS_SIGV4",
)


class NotQuick(Exception):
    """This version cannot be served by the fast start (the reason says why)."""


def _get(url: str, timeout: float) -> bytes:
    with urlopen(Request(url, headers=tracking_auth_headers()), timeout=timeout) as response:
        return response.read()


def _api(base: str, endpoint: str, params: dict[str, str], timeout: float) -> dict[str, Any]:
    return json.loads(_get(f"{base}/api/2.0/mlflow/{endpoint}?{urlencode(params)}", timeout))


def _artifact_url(base: str, artifact_uri: str, path: str) -> str | Path:
    """Where the run's artifact `path` is: a URL on the server, or a local file."""
    if artifact_uri.startswith("mlflow-artifacts:"):
        rest = artifact_uri.removeprefix("mlflow-artifacts:").lstrip("/")
        if artifact_uri.startswith("mlflow-artifacts://"):  # mlflow-artifacts://host:port/...
            rest = rest.split("/", 1)[1] if "/" in rest else ""
        return f"{base}/api/2.0/mlflow-artifacts/artifacts/{quote(rest)}/{quote(path)}"
    if artifact_uri.startswith("file://"):
        return Path(artifact_uri.removeprefix("file://")) / path
    if artifact_uri.startswith("/"):
        return Path(artifact_uri) / path
    raise NotQuick(f"artifacts at {artifact_uri.split(':', 1)[0]}: not read without MLflow")


def _resolve(base: str, name: str, alias: str, dest: Path, timeout: float) -> dict[str, Any]:
    from include.ml_pipeline.serving.loading.artifact import FORMAT, SPEC_FILE, TAG

    version = _api(base, "registered-models/alias", {"name": name, "alias": alias}, timeout)[
        "model_version"
    ]
    tags = {t["key"]: t.get("value") for t in version.get("tags") or ()}
    if not tags.get(TAG):
        raise NotQuick(f"v{version['version']} has no serving artifact")
    tag = json.loads(tags[TAG])
    sha256 = tag.get("sha256") or {}
    if tag.get("format") != FORMAT or SPEC_FILE not in sha256:
        raise NotQuick(f"v{version['version']}'s serving artifact lists no {SPEC_FILE}")
    run_id, prefix = version.get("run_id"), f"runs:/{version.get('run_id')}/"
    if not run_id or not str(tag.get("uri", "")).startswith(prefix):
        raise NotQuick(f"serving artifact at {tag.get('uri')!r}, not in the version's run")
    run = _api(base, "runs/get", {"run_id": run_id}, timeout)["run"]
    folder = tag["uri"].removeprefix(prefix).strip("/")
    for file_name in sha256:
        where = _artifact_url(base, run["info"]["artifact_uri"], f"{folder}/{file_name}")
        data = where.read_bytes() if isinstance(where, Path) else _get(where, timeout)
        (dest / file_name).write_bytes(data)
    spec_bytes = (dest / SPEC_FILE).read_bytes()
    if hashlib.sha256(spec_bytes).hexdigest() != sha256[SPEC_FILE]:
        raise NotQuick(f"{SPEC_FILE} does not match the sha256 of the version's {TAG!r} tag")
    metrics = {m["key"]: m["value"] for m in (run.get("data") or {}).get("metrics") or ()}
    return {
        "name": name,
        "alias": alias,
        "version": str(version["version"]),
        "run_id": run_id,
        "source": version.get("source"),
        "spec": json.loads(spec_bytes),
        "metrics": metrics,
        "serving_artifact": {"dir": str(dest), "sha256": sha256},
        "contract": None,  # filled in by the fetch child, in the background
        "resolved_by": "mlflow REST API",
    }


def quick_fetch(
    tracking_uri: str, name: str, alias: str, dest: str | Path, timeout: float = 5.0
) -> dict[str, Any] | None:
    """What `fetch.fetch` returns that serving from the artifact needs (version, run id,
    source, spec, metrics, the downloaded `serving_artifact`), read over the REST API
    into `dest`; None (logged) when the fast start does not apply or anything fails:
    the caller then waits for `fetch.fetch`, which names any real error."""
    base = tracking_uri.rstrip("/")
    if not base.startswith(("http://", "https://")):
        return None
    if os.environ.get("MODEL_API_FAST_START", "true").strip().lower() in ("0", "false", "no"):
        return None  # turned off: start through the fetch child (MLflow) only
    unsupported = [k for k in UNSUPPORTED_ENV if os.environ.get(k)]
    if unsupported:
        log.info("fast start not used: %s set (MLflow handles it)", ", ".join(unsupported))
        return None
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        return _resolve(base, name, alias, dest, timeout)
    except (NotQuick, URLError, OSError, KeyError, ValueError, TypeError) as exc:
        log.info("fast start not used for models:/%s@%s: %s", name, alias, exc)
        shutil.rmtree(dest, ignore_errors=True)
        return None
