"""The model API's fast start: resolve `models:/<name>@<alias>` and download the version's
serving artifact (`artifact.py`) over MLflow's REST API with the standard library alone,
so the API can serve before the fetch child (`fetch.py`) has even imported MLflow
(`import mlflow` plus its store: most of a restart's time). A `sqlite:///` registry (a
single-machine deployment, the benchmark) is read the same way with `sqlite3`, read-only
(`_resolve_sqlite`), the version's input contract included, so `GET /model` has it as
soon as the API is ready.

Used only when all of these hold, else `quick_fetch` returns None and the load waits for
the fetch child as before:

- the tracking URI is `http(s)://` (an `mlflow server`, as in the compose stack) with
  no credentials but `MLFLOW_TRACKING_TOKEN` or `MLFLOW_TRACKING_USERNAME`/`_PASSWORD`,
  or `sqlite:///<file>` whose tables have the columns read here (MLflow 3's schema, the
  default workspace) and whose version has an input contract in a local folder or none
  (then it is derived from the feature spec and the run's `classes` tag, as
  `registry.contract` derives it);
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
from collections.abc import Callable
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
    version = _api(base, "registered-models/alias", {"name": name, "alias": alias}, timeout)[
        "model_version"
    ]
    tags = {t["key"]: t.get("value") for t in version.get("tags") or ()}
    runs: dict[str, Any] = {}

    def artifacts(run_id: str) -> str:
        runs[run_id] = _api(base, "runs/get", {"run_id": run_id}, timeout)["run"]
        return runs[run_id]["info"]["artifact_uri"]

    def fetched(artifact_uri: str, path: str) -> bytes:
        where = _artifact_url(base, artifact_uri, path)
        return where.read_bytes() if isinstance(where, Path) else _get(where, timeout)

    info = _from_version(version, tags, artifacts, dest, fetched)
    run = runs[info["run_id"]]
    info["metrics"] = {m["key"]: m["value"] for m in (run.get("data") or {}).get("metrics") or ()}
    info["contract"] = None  # filled in by the fetch child, in the background
    info["resolved_by"] = "mlflow REST API"
    return info


def _from_version(
    version: dict[str, Any],
    tags: dict[str, Any],
    artifacts: Callable[[str], Any],
    dest: Path,
    fetched: Callable[[str, str], bytes] | None = None,
) -> dict[str, Any]:
    """The serving artifact's files of `version` (`{"version", "run_id", "source"}`, its
    `tags`) copied into `dest`, the spec checked against the tag's sha256: the fields of
    `fetch.fetch`'s result both stores give alike. `artifacts(run_id)`: the run's artifact
    location (a URI, or a local folder); `fetched(location, path)`: a file's bytes
    (default: `location` is a local folder)."""
    from include.ml_pipeline.serving.loading.artifact import FORMAT, SPEC_FILE, TAG

    if not tags.get(TAG):
        raise NotQuick(f"v{version['version']} has no serving artifact")
    tag = json.loads(tags[TAG])
    sha256 = tag.get("sha256") or {}
    if tag.get("format") != FORMAT or SPEC_FILE not in sha256:
        raise NotQuick(f"v{version['version']}'s serving artifact lists no {SPEC_FILE}")
    run_id, prefix = version.get("run_id"), f"runs:/{version.get('run_id')}/"
    if not run_id or not str(tag.get("uri", "")).startswith(prefix):
        raise NotQuick(f"serving artifact at {tag.get('uri')!r}, not in the version's run")
    location = artifacts(run_id)
    folder = tag["uri"].removeprefix(prefix).strip("/")
    for file_name in sha256:
        if fetched is None:
            data = (Path(location) / folder / file_name).read_bytes()
        else:
            data = fetched(location, f"{folder}/{file_name}")
        (dest / file_name).write_bytes(data)
    spec_bytes = (dest / SPEC_FILE).read_bytes()
    if hashlib.sha256(spec_bytes).hexdigest() != sha256[SPEC_FILE]:
        raise NotQuick(f"{SPEC_FILE} does not match the sha256 of the version's {TAG!r} tag")
    return {
        "name": None,
        "alias": None,
        "version": str(version["version"]),
        "run_id": run_id,
        "source": version.get("source"),
        "spec": json.loads(spec_bytes),
        "serving_artifact": {"dir": str(dest), "sha256": sha256},
    }


SQLITE_PREFIX = "sqlite:///"


def _resolve_sqlite(path: str, name: str, alias: str, dest: Path) -> dict[str, Any]:
    """`_resolve` on MLflow's SQLite store, opened read-only (no schema check, no write)."""
    import sqlite3

    from include.ml_pipeline.names import INPUT_CONTRACT_TAG
    from include.ml_pipeline.registry.contract import derived_contract

    try:
        db = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
    except sqlite3.Error as exc:
        raise NotQuick(f"the SQLite store {path} cannot be opened: {exc}") from exc
    try:

        def rows(sql: str, *args: Any) -> list[tuple]:
            return db.execute(sql, args).fetchall()

        found = rows(
            "SELECT version FROM registered_model_aliases "
            "WHERE name = ? AND alias = ? AND workspace = 'default'",
            name,
            alias,
        )
        if len(found) != 1:
            raise NotQuick(f"the alias {alias!r} of {name!r} is not one row of the store")
        number = found[0][0]
        version = rows(
            "SELECT source, run_id, status FROM model_versions "
            "WHERE name = ? AND version = ? AND workspace = 'default'",
            name,
            number,
        )
        if len(version) != 1 or version[0][2] != "READY":
            raise NotQuick(f"v{number} of {name!r} is not one ready row of the store")
        source, run_id, _ = version[0]
        tags = dict(
            rows(
                "SELECT key, value FROM model_version_tags "
                "WHERE name = ? AND version = ? AND workspace = 'default'",
                name,
                number,
            )
        )

        def artifact_folder(run: str) -> Path:
            found = rows("SELECT artifact_uri FROM runs WHERE run_uuid = ?", run)
            if len(found) != 1:
                raise NotQuick(f"run {run} is not one row of the store")
            where = _artifact_url("", found[0][0], "")
            if not isinstance(where, Path):
                raise NotQuick("the run's artifacts are not in a local folder")
            return where

        info = _from_version(
            {"version": number, "run_id": run_id, "source": source}, tags, artifact_folder, dest
        )
        info["metrics"] = {
            key: (float("nan") if is_nan else value)
            for key, value, is_nan in rows(
                "SELECT key, value, is_nan FROM latest_metrics WHERE run_uuid = ?", run_id
            )
        }
        uri = tags.get(INPUT_CONTRACT_TAG)
        if uri:
            contract_run, contract_path = str(uri).removeprefix("runs:/").split("/", 1)
            contract = json.loads((artifact_folder(contract_run) / contract_path).read_text())
        else:
            classes = rows("SELECT value FROM tags WHERE run_uuid = ? AND key = 'classes'", run_id)
            contract = derived_contract(info["spec"], classes[0][0] if classes else None)
        info["contract"] = {**contract, "model_name": name, "version": str(number), "uri": uri}
        info["resolved_by"] = "mlflow SQLite store"
        return info
    except sqlite3.Error as exc:
        raise NotQuick(f"the SQLite store is not read as expected: {exc}") from exc
    finally:
        db.close()


def quick_fetch(
    tracking_uri: str, name: str, alias: str, dest: str | Path, timeout: float = 5.0
) -> dict[str, Any] | None:
    """What `fetch.fetch` returns that serving from the artifact needs (version, run id,
    source, spec, metrics, the downloaded `serving_artifact`), read over the REST API
    into `dest`; None (logged) when the fast start does not apply or anything fails:
    the caller then waits for `fetch.fetch`, which names any real error."""
    base = tracking_uri.rstrip("/")
    sqlite = base.startswith(SQLITE_PREFIX)
    if not base.startswith(("http://", "https://")) and not sqlite:
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
        if sqlite:
            info = _resolve_sqlite(base.removeprefix(SQLITE_PREFIX), name, alias, dest)
        else:
            info = _resolve(base, name, alias, dest, timeout)
        info.update(name=name, alias=alias)
        return info
    except (NotQuick, URLError, OSError, KeyError, ValueError, TypeError) as exc:
        log.info("fast start not used for models:/%s@%s: %s", name, alias, exc)
        shutil.rmtree(dest, ignore_errors=True)
        return None
