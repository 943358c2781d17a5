"""The input contract of a model version: what clients send and what they get back.

A contract names the model's input columns in order, each with its kind (`numeric`:
JSON numbers; `categorical`: JSON strings, with the categories seen in training), and
the target: its name, the type of the labels the API returns (`string`, `integer`,
`boolean`) and the label set. Missing values (JSON null) are accepted for every column:
the fitted pipeline imputes them. It is built from the training split when the version
is registered, logged as JSON to the version's run (`contract/input_contract.json`),
and the version's `input_contract` tag points at it, so `load_contract` (the model API's
`GET /model`, the deploy gate) finds it from the registry alone::

    {"format": "ml_pipeline.input_contract/1",
     "columns": [{"name": "age", "kind": "numeric", "type": "number", "required": true,
                  "nullable": true},
                 {"name": "region", "kind": "categorical", "type": "string",
                  "required": true, "nullable": true,
                  "categories": ["east", "north"], "categories_truncated": false}],
     "target": {"name": "churn", "type": "string", "labels": ["no", "yes"],
                "problem_type": "binary"},
     "train_rows": 900}

A regression model's target has no labels but the range of values seen in training::

     "target": {"name": "price", "type": "number", "problem_type": "regression",
                "range": [326.0, 18823.0], "mean": 3932.8}

`compare_contracts(champion, challenger)` lists what a client of the champion would have
to change to use the challenger: a column removed, added (it would become required),
renamed (a removed and an added column of the same kind with close names), or retyped
(numeric <-> categorical), a changed problem type (a classifier replaced by a regressor:
clients read numbers instead of labels), and a changed label type or label set. New or
unseen categories are not a change, nor is a regression target's range: the model
accepts unknown categories and predicts any number.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, overload

from include.ml_pipeline.names import (
    INPUT_CONTRACT_ARTIFACT,
    INPUT_CONTRACT_TAG,
)

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from include.ml_pipeline.features import FeatureSpec

CONTRACT_FORMAT = "ml_pipeline.input_contract/1"
#: Categories listed per column (the rest are counted, not listed).
MAX_CATEGORIES = 200
_TYPE_OF_KIND = {"numeric": "number", "categorical": "string"}


# --------------------------------------------------------------------------- building


def label_type_of(values: Any) -> str:
    """`boolean`, `integer` or `string`: the JSON type of the labels the API returns."""
    import pandas as pd

    series = pd.Series(values)
    kind = series.dtype.kind
    if kind == "b":
        return "boolean"
    if kind in "iu":
        return "integer"
    if kind == "f":
        return "number"
    present = series.dropna()
    if len(present) and all(isinstance(v, bool) for v in present):
        return "boolean"
    if len(present) and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return "integer"
    return "string"


def build_contract(frame: pd.DataFrame, spec: FeatureSpec | dict[str, Any]) -> dict[str, Any]:
    """The contract of a model trained on `frame` (the training split) with `spec`."""
    from include.ml_pipeline.features import FeatureSpec, coerce_features

    if not isinstance(spec, FeatureSpec):
        spec = FeatureSpec.from_dict(spec)
    X = coerce_features(frame, spec)
    columns = []
    for name in spec.columns:
        kind = spec.kind_of(name)
        entry: dict[str, Any] = {
            "name": name,
            "kind": kind,
            "type": _TYPE_OF_KIND[kind],
            "required": True,
            "nullable": True,
        }
        if kind == "categorical":
            seen = sorted({str(v) for v in X[name].tolist() if v is not None})
            entry["categories"] = seen[:MAX_CATEGORIES]
            entry["categories_truncated"] = len(seen) > MAX_CATEGORIES
        columns.append(entry)
    labels = frame[spec.target].dropna()
    if spec.is_regression:
        values = labels.astype(float)
        target: dict[str, Any] = {
            "name": spec.target,
            "type": "number",
            "problem_type": spec.problem_type,
            "range": [float(values.min()), float(values.max())] if len(values) else None,
            "mean": float(values.mean()) if len(values) else None,
        }
    else:
        unique = sorted(labels.unique().tolist(), key=lambda v: (str(type(v)), v))
        target = {"name": spec.target, "type": label_type_of(labels), "labels": unique}
        if spec.problem_type:
            target["problem_type"] = spec.problem_type
    return {
        "format": CONTRACT_FORMAT,
        "columns": columns,
        "target": target,
        "train_rows": len(frame),
    }


def problem_type_of_contract(contract: dict[str, Any]) -> str:
    """The contract's problem type; a contract recorded before problem types is a
    classifier's (binary with two labels, else multiclass)."""
    target = contract.get("target") or {}
    if target.get("problem_type"):
        return str(target["problem_type"])
    return "binary" if len(target.get("labels") or []) == 2 else "multiclass"


@overload
def summary(contract: dict[str, Any]) -> dict[str, Any]: ...
@overload
def summary(contract: None) -> None: ...
def summary(contract: dict[str, Any] | None) -> dict[str, Any] | None:
    """The contract without the category lists (small enough for XCom and tags)."""
    if contract is None:
        return None
    out = {k: v for k, v in contract.items() if k != "columns"}
    out["columns"] = [
        {k: v for k, v in col.items() if k not in ("categories", "categories_truncated")}
        for col in contract.get("columns", [])
    ]
    return out


# --------------------------------------------------------------------------- comparing


@dataclass(frozen=True)
class ContractChange:
    """One difference a client of the champion would notice."""

    kind: str  # removed | added | renamed | retyped | problem_type | label_type | labels
    column: str | None
    description: str  # what changed
    client_action: str  # what a client must change

    def __str__(self) -> str:
        return f"{self.description} (clients: {self.client_action})"


@dataclass(frozen=True)
class ContractComparison:
    """The challenger's contract against the champion's. `note` says why no comparison
    was possible (then `changes` is empty and `compared` False)."""

    champion_version: str | None
    changes: list[ContractChange] = field(default_factory=list)
    compared: bool = True
    note: str | None = None
    #: Why the challenger is another problem altogether (`different_problem`), or None.
    different_problem: str | None = None

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _columns(contract: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {col["name"]: col for col in contract.get("columns", [])}


def _type_name(col: dict[str, Any]) -> str:
    return str(col.get("kind", "?"))


def _label_text(labels: list[Any]) -> str:
    return ", ".join(json.dumps(v) for v in labels[:10]) + (", ..." if len(labels) > 10 else "")


def compare_contracts(champion: dict[str, Any], challenger: dict[str, Any]) -> list[ContractChange]:
    """What changes for a client of `champion` if `challenger` replaces it."""
    old, new = _columns(champion), _columns(challenger)
    removed = [n for n in old if n not in new]
    added = [n for n in new if n not in old]
    changes: list[ContractChange] = []
    renamed: dict[str, str] = {}
    for name in removed:
        same_kind = [a for a in added if new[a]["kind"] == old[name]["kind"] and a not in renamed]
        match = difflib.get_close_matches(name, same_kind, n=1, cutoff=0.6)
        if match:
            renamed[match[0]] = name
    for name in removed:
        if name in renamed.values():
            new_name = next(a for a, r in renamed.items() if r == name)
            changes.append(
                ContractChange(
                    "renamed",
                    name,
                    f"column {name!r} is gone and {new_name!r} ({_type_name(new[new_name])}) "
                    "is new: renamed?",
                    f"send {new_name!r} instead of {name!r}",
                )
            )
        else:
            changes.append(
                ContractChange(
                    "removed",
                    name,
                    f"column {name!r} ({_type_name(old[name])}) is no longer an input",
                    f"stop sending {name!r}",
                )
            )
    for name in added:
        if name in renamed:
            continue
        changes.append(
            ContractChange(
                "added",
                name,
                f"new column {name!r} ({_type_name(new[name])}) would be required",
                f"send {name!r} as a {new[name].get('type', 'value')} (or null)",
            )
        )
    for name in old:
        if name in new and old[name]["kind"] != new[name]["kind"]:
            changes.append(
                ContractChange(
                    "retyped",
                    name,
                    f"column {name!r} changes from {_type_name(old[name])} to "
                    f"{_type_name(new[name])}",
                    f"send {name!r} as a {new[name].get('type', 'value')}",
                )
            )
    old_t, new_t = champion.get("target") or {}, challenger.get("target") or {}
    old_p, new_p = problem_type_of_contract(champion), problem_type_of_contract(challenger)
    if old_p != new_p and "regression" in (old_p, new_p):  # binary <-> multiclass: labels
        changes.append(
            ContractChange(
                "problem_type",
                None,
                f"the problem type changes from {old_p} to {new_p} (predictions were "
                f"{old_t.get('type')} values, now {new_t.get('type')})",
                "read predictions as numbers"
                if new_p == "regression"
                else f"read predictions as {new_t.get('type')} labels",
            )
        )
    elif old_t.get("type") and new_t.get("type") and old_t["type"] != new_t["type"]:
        changes.append(
            ContractChange(
                "label_type",
                None,
                f"predicted labels change type from {old_t['type']} to {new_t['type']} "
                f"({_label_text(old_t.get('labels', []))} -> "
                f"{_label_text(new_t.get('labels', []))})",
                f"read predictions as {new_t['type']} values",
            )
        )
    elif "labels" in old_t and "labels" in new_t:
        gone = [v for v in old_t["labels"] if v not in new_t["labels"]]
        fresh = [v for v in new_t["labels"] if v not in old_t["labels"]]
        if gone or fresh:
            parts = []
            if fresh:
                parts.append(f"new label(s) {_label_text(fresh)}")
            if gone:
                parts.append(f"label(s) {_label_text(gone)} no longer predicted")
            changes.append(
                ContractChange(
                    "labels",
                    None,
                    f"the label set changes: {'; '.join(parts)}",
                    f"handle the labels {_label_text(new_t['labels'])}",
                )
            )
    return changes


def different_problem(champion: dict[str, Any], challenger: dict[str, Any]) -> str | None:
    """Why `challenger` is another problem than `champion` rather than a new version of
    it -- it shares none of its input columns, or none of its labels -- else None."""
    old, new = _columns(champion), _columns(challenger)
    if old and new and not set(old) & set(new):
        return (
            f"it shares none of the champion's {len(old)} input columns "
            f"({', '.join(list(old)[:4])}{', ...' if len(old) > 4 else ''})"
        )
    old_labels = (champion.get("target") or {}).get("labels")
    new_labels = (challenger.get("target") or {}).get("labels")
    if (
        old_labels
        and new_labels
        and not {json.dumps(v) for v in old_labels} & {json.dumps(v) for v in new_labels}
    ):
        return (
            f"none of its labels ({_label_text(new_labels)}) is one of the champion's "
            f"({_label_text(old_labels)})"
        )
    return None


def compare(
    champion_version: str | None, champion: dict[str, Any], challenger: dict[str, Any]
) -> ContractComparison:
    """The challenger's contract against the champion's: every change, and whether it
    is a different problem altogether."""
    return ContractComparison(
        champion_version,
        compare_contracts(champion, challenger),
        different_problem=different_problem(champion, challenger),
    )


# --------------------------------------------------------------------------- MLflow


def contract_uri(run_id: str) -> str:
    return f"runs:/{run_id}/{INPUT_CONTRACT_ARTIFACT}"


def log_contract(tracking_uri: str, run_id: str, contract: dict[str, Any]) -> str:
    """Log `contract` as JSON to the run; return its `runs:/` URI (what the version's
    `input_contract` tag holds). Logging it again overwrites it."""
    from include.ml_pipeline.registry.mlflow_setup import configure_mlflow

    configure_mlflow(tracking_uri).log_dict(run_id, contract, INPUT_CONTRACT_ARTIFACT)
    return contract_uri(run_id)


def _read_artifact(client: Any, uri: str) -> dict[str, Any]:
    import tempfile
    from pathlib import Path

    run_id, path = uri.removeprefix("runs:/").split("/", 1)
    with tempfile.TemporaryDirectory() as tmp:
        local = client.download_artifacts(run_id, path, tmp)
        return json.loads(Path(local).read_text())


def _derived_contract(client: Any, name: str, version: Any) -> dict[str, Any] | None:
    """A contract for a version registered before contracts were recorded: its columns
    and kinds from the model's feature spec, its labels from the run's `classes` tag."""
    from mlflow.models import get_model_info

    metadata = get_model_info(f"models:/{name}/{version.version}").metadata or {}
    spec = metadata.get("feature_spec")
    if not spec:
        return None
    classes = client.get_run(version.run_id).data.tags.get("classes") if version.run_id else None
    return derived_contract(spec, classes)


def derived_contract(spec: dict[str, Any], classes: str | None) -> dict[str, Any]:
    """`_derived_contract` from a feature spec (`FeatureSpec.to_dict()`) and the run's
    `classes` tag (comma-separated, or None), read by the caller (the model API's fast
    start reads both without MLflow)."""
    columns = [
        {"name": c, "kind": kind, "type": _TYPE_OF_KIND[kind], "required": True, "nullable": True}
        for kind, names in (
            ("numeric", spec.get("numeric", [])),
            ("categorical", spec.get("categorical", [])),
        )
        for c in names
    ]
    target: dict[str, Any] = {"name": spec.get("target")}
    if classes:
        raw = classes.split(",")
        if all(v in ("True", "False") for v in raw):
            target.update(type="boolean", labels=[v == "True" for v in raw])
        elif all(v.lstrip("-").isdigit() for v in raw):
            target.update(type="integer", labels=[int(v) for v in raw])
        else:
            target.update(type="string", labels=raw)
    return {
        "format": CONTRACT_FORMAT,
        "columns": columns,
        "target": target,
        "derived": "from the model's feature spec and classes (no contract was recorded)",
    }


def load_contract(tracking_uri: str, name: str, version: str | int) -> dict[str, Any] | None:
    """The input contract of version `version` of registered model `name` (with
    `model_name`, `version` and `uri` added), derived from the model's feature spec for
    a version registered without one; None when the version has neither."""
    from include.ml_pipeline.registry.mlflow_setup import configure_mlflow

    client = configure_mlflow(tracking_uri)
    return contract_of_version(client, name, client.get_model_version(name, str(version)))


def contract_of_version(client: Any, name: str, mv: Any) -> dict[str, Any] | None:
    """`load_contract` for a `ModelVersion` `mv` of `name` already read with `client`
    (the model API's fetch step has both)."""
    uri = (mv.tags or {}).get(INPUT_CONTRACT_TAG)
    contract = _read_artifact(client, uri) if uri else _derived_contract(client, name, mv)
    if contract is None:
        return None
    return {**contract, "model_name": name, "version": str(mv.version), "uri": uri}
