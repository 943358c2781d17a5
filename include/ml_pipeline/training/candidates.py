"""Candidate model configurations: what `entrenar_modelo` maps over.

A candidate is a JSON-able dict, so it can be an Airflow Param and an XCom value::

    {"name": "logreg_c1", "estimator": "logistic_regression", "params": {"C": 1.0}}
    {"name": "lgbm", "estimator": "lightgbm", "params": {"num_leaves": 63}}
    {"name": "mine", "estimator": "include.custom_models.ratio_features:ratio_boosting_classifier",
     "input": "raw"}
    {"name": "lgbm_tuned", "estimator": "lightgbm", "search": {"n_trials": 20, "params": {
        "learning_rate": {"type": "float", "low": 0.01, "high": 0.3, "log": true}}}}

`name` identifies the candidate (unique within a list; it names the MLflow run),
`estimator` is one of `ESTIMATORS` or an import path `package.module:name` to your own
class or factory (`training.custom`: the object must import, be an estimator, and fit;
`input` says whether it follows the project's preprocessor or takes the raw columns),
and `params` are keyword arguments of that estimator. `search` is an optional Optuna
search over some of those params (`training.search`). `random_state` comes from the
training seed unless `params` sets it (built-in kinds only: a custom estimator gets its
params as given).

`lightgbm` and `xgboost` are the libraries' scikit-learn estimators (`LGBMClassifier` /
`LGBMRegressor`, `XGBRegressor`, and `estimators.LabelledXGBClassifier`, an
`XGBClassifier` that takes any labels) with fast, deterministic defaults (`_BASE_PARAMS`:
one thread, seeded); they accept any of their libraries' parameters, which the libraries
check only when fitting, so `probe.probe_candidates` fits them (and every custom
estimator) on a small sample at `iniciar_experimento`.

`validate_candidates` checks a whole list up front and names the bad key;
`make_estimator` builds the (unfitted) estimator that goes after the preprocessor in the
model pipeline.

`WEAK_CANDIDATE` is deliberately useless (scikit-learn's `DummyClassifier` predicting the
class prior: ROC AUC exactly 0.5, accuracy equal to the majority-class share). Tests and
the DAG's "weak configuration" Param use it to prove that the deploy gate rejects a bad
model and that `champion` does not move.

A regression problem (`problem.REGRESSION`) has its own estimators under the same kind
names where the idea is the same (`hist_gradient_boosting`, `random_forest`, `dummy`:
the scikit-learn regressors) plus `ridge`, its own defaults (`DEFAULT_REGRESSION_CANDIDATES`)
and its weak candidate (`WEAK_REGRESSION_CANDIDATE`: `DummyRegressor` predicting the
training mean, R^2 about 0). The `candidates` Param left empty (null) takes the defaults of
the problem type.
"""

from __future__ import annotations

import copy
import json
import math
import re
from typing import Any

from include.ml_pipeline.payloads import Candidate
from include.ml_pipeline.problem import REGRESSION

# estimator kind -> (module, class name)
ESTIMATORS: dict[str, tuple[str, str]] = {
    "logistic_regression": ("sklearn.linear_model", "LogisticRegression"),
    "hist_gradient_boosting": ("sklearn.ensemble", "HistGradientBoostingClassifier"),
    "random_forest": ("sklearn.ensemble", "RandomForestClassifier"),
    "dummy": ("sklearn.dummy", "DummyClassifier"),
    "lightgbm": ("lightgbm", "LGBMClassifier"),
    "xgboost": ("include.ml_pipeline.training.estimators", "LabelledXGBClassifier"),
}

REGRESSION_ESTIMATORS: dict[str, tuple[str, str]] = {
    "ridge": ("sklearn.linear_model", "Ridge"),
    "hist_gradient_boosting": ("sklearn.ensemble", "HistGradientBoostingRegressor"),
    "random_forest": ("sklearn.ensemble", "RandomForestRegressor"),
    "dummy": ("sklearn.dummy", "DummyRegressor"),
    "lightgbm": ("lightgbm", "LGBMRegressor"),
    "xgboost": ("xgboost", "XGBRegressor"),
}

#: Kinds that take any parameter of their library (checked by the library when fitting).
OPEN_PARAMS = frozenset({"lightgbm", "xgboost"})

# Settings applied before the candidate's own params (which win).
_BASE_PARAMS: dict[str, dict[str, Any]] = {
    "logistic_regression": {"max_iter": 2000},
    "ridge": {},
    "hist_gradient_boosting": {},
    "random_forest": {"n_jobs": 1},
    "dummy": {},
    # One thread (mapped candidates run side by side), seeded through random_state, and
    # deterministic: the same data and seed give the same trees.
    "lightgbm": {
        "n_estimators": 200,
        "learning_rate": 0.05,
        "num_leaves": 31,
        "n_jobs": 1,
        "deterministic": True,
        "force_row_wise": True,
        "verbose": -1,
    },
    "xgboost": {
        "n_estimators": 200,
        "learning_rate": 0.1,
        "max_depth": 6,
        "tree_method": "hist",
        "n_jobs": 1,
        "verbosity": 0,
    },
}


def estimators_for(problem_type: str | None) -> dict[str, tuple[str, str]]:
    """The estimator kinds of a problem type (classification for "" / None)."""
    return REGRESSION_ESTIMATORS if problem_type == REGRESSION else ESTIMATORS


CANDIDATE_KEYS = frozenset({"name", "estimator", "params", "search", "input"})
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")

#: The two histogram gradient boosting configurations both problem types start from (the
#: estimator is the classifier or the regressor by the problem type).
_HGB_CANDIDATES: list[dict[str, Any]] = [
    {
        "name": "hgb_shallow",
        "estimator": "hist_gradient_boosting",
        "params": {"learning_rate": 0.1, "max_iter": 200, "max_depth": 3, "early_stopping": True},
    },
    {
        "name": "hgb_deep",
        "estimator": "hist_gradient_boosting",
        "params": {
            "learning_rate": 0.05,
            "max_iter": 300,
            "max_leaf_nodes": 31,
            "l2_regularization": 1.0,
            "early_stopping": True,
        },
    },
]

DEFAULT_CANDIDATES: list[dict[str, Any]] = [
    {"name": "logreg_c0.1", "estimator": "logistic_regression", "params": {"C": 0.1}},
    {"name": "logreg_c1", "estimator": "logistic_regression", "params": {"C": 1.0}},
    *copy.deepcopy(_HGB_CANDIDATES),
]

WEAK_CANDIDATE: dict[str, Any] = {
    "name": "weak_prior",
    "estimator": "dummy",
    "params": {"strategy": "prior"},
}

DEFAULT_REGRESSION_CANDIDATES: list[dict[str, Any]] = [
    {"name": "ridge_a1", "estimator": "ridge", "params": {"alpha": 1.0}},
    *copy.deepcopy(_HGB_CANDIDATES),
    {
        "name": "random_forest",
        "estimator": "random_forest",
        "params": {"n_estimators": 100, "min_samples_leaf": 5, "max_features": 0.5},
    },
]

WEAK_REGRESSION_CANDIDATE: dict[str, Any] = {
    "name": "weak_mean",
    "estimator": "dummy",
    "params": {"strategy": "mean"},
}


class CandidateError(ValueError):
    """A candidate configuration is invalid; the message names the candidate and the key."""


def default_candidates(problem_type: str | None = None) -> list[dict[str, Any]]:
    """A fresh copy of the problem type's defaults (safe to mutate)."""
    if problem_type == REGRESSION:
        return copy.deepcopy(DEFAULT_REGRESSION_CANDIDATES)
    return copy.deepcopy(DEFAULT_CANDIDATES)


def weak_candidates(problem_type: str | None = None) -> list[dict[str, Any]]:
    """A one-element list with a fresh copy of the problem type's weak candidate."""
    if problem_type == REGRESSION:
        return [copy.deepcopy(WEAK_REGRESSION_CANDIDATE)]
    return [copy.deepcopy(WEAK_CANDIDATE)]


def _estimator_class(kind: str, problem_type: str | None = None) -> type:
    import importlib

    module, name = estimators_for(problem_type)[kind]
    return getattr(importlib.import_module(module), name)


def _check_json_value(value: Any, where: str) -> None:
    if value is None or isinstance(value, str | bool | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CandidateError(f"{where} must be a finite number; got {value!r}")
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_json_value(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise CandidateError(f"{where} keys must be strings; got {key!r}")
            _check_json_value(item, f"{where}.{key}")
        return
    raise CandidateError(
        f"{where} must be a JSON value (string, number, bool, null, list, object); "
        f"got {type(value).__name__}"
    )


def validate_candidate(candidate: Any, problem_type: str | None = None) -> dict[str, Any]:
    """Check one candidate for `problem_type` (classification when None) and return a
    normalised copy (`params` defaulted to `{}`; `search` and `input` when given).

    Raises `CandidateError` naming the offending key: a missing or unknown top-level key,
    an unknown estimator, an import path that does not give an estimator, a parameter the
    estimator does not accept, a non-JSON value, a value scikit-learn rejects (e.g. a
    negative `C`), or a bad `search` block.
    """
    from include.ml_pipeline.training import custom
    from include.ml_pipeline.training.search import SearchError, corner_values, validate_search

    if not isinstance(candidate, dict):
        raise CandidateError(f"a candidate must be a dict; got {type(candidate).__name__}")
    label = repr(candidate.get("name", "<unnamed>"))
    unknown = sorted(set(candidate) - CANDIDATE_KEYS)
    if unknown:
        raise CandidateError(
            f"candidate {label}: unknown key(s) {', '.join(map(repr, unknown))}; "
            f"allowed keys are {', '.join(sorted(CANDIDATE_KEYS))}"
        )
    for key in ("name", "estimator"):
        if key not in candidate:
            raise CandidateError(f"candidate {label}: missing required key {key!r}")
    name = candidate["name"]
    if not isinstance(name, str) or not _NAME_PATTERN.match(name):
        raise CandidateError(
            f"candidate {label}: key 'name' must be 1-100 characters of letters, digits, "
            f"'_', '.', '-' (starting with a letter or digit); got {name!r}"
        )
    kind = candidate["estimator"]
    is_custom = custom.is_import_path(kind)
    known = estimators_for(problem_type)
    if not is_custom and kind not in known:
        what = "a regression" if problem_type == REGRESSION else "a classification"
        raise CandidateError(
            f"candidate {label}: key 'estimator' must be one of "
            f"{', '.join(sorted(known))} for {what} problem, or an import path "
            f"package.module:name to your own estimator; got {kind!r}"
        )
    input_ = candidate.get("input", "preprocessed")
    if input_ not in custom.INPUTS:
        raise CandidateError(
            f"candidate {label}: key 'input' must be one of {', '.join(custom.INPUTS)}; "
            f"got {input_!r}"
        )
    if input_ == "raw" and not is_custom:
        raise CandidateError(
            f"candidate {label}: key 'input' 'raw' is for your own estimator (an import "
            f"path), not the built-in {kind!r}; remove 'input'"
        )
    params = candidate.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise CandidateError(
            f"candidate {label}: key 'params' must be a dict; got {type(params).__name__}"
        )
    _check_json_value(params, f"candidate {label}: params")
    try:
        search = validate_search(candidate.get("search"), f"candidate {label}: search")
    except SearchError as exc:
        raise CandidateError(str(exc)) from exc
    if search is not None:
        _check_json_value(search, f"candidate {label}: search")
    checked = {"name": name, "estimator": kind, "params": copy.deepcopy(params)}
    if search is not None:
        checked["search"] = search
    if input_ != "preprocessed":
        checked["input"] = input_
    trials = corner_values(search) if search else []
    if is_custom:
        classification = problem_type != REGRESSION
        for values in [{}, *trials]:
            try:
                custom.build(kind, {**params, **values}, classification)
            except custom.CustomEstimatorError as exc:
                where = f" (search values {values})" if values else ""
                raise CandidateError(f"candidate {label}{where}: {exc}") from exc
        return checked
    cls = _estimator_class(kind, problem_type)
    if kind not in OPEN_PARAMS:
        accepted = set(cls().get_params(deep=False))
        searched = set(search["params"]) if search else set()
        bad = sorted((set(params) | searched) - accepted)
        if bad:
            raise CandidateError(
                f"candidate {label}: params key(s) {', '.join(map(repr, bad))} not accepted "
                f"by {cls.__name__}; accepted: {', '.join(sorted(accepted))}"
            )
    for values in [{}, *trials]:
        estimator = cls(**{**_BASE_PARAMS[kind], **params, **values})
        validate = getattr(estimator, "_validate_params", None)
        if validate is not None and hasattr(estimator, "_parameter_constraints"):
            try:
                validate()
            except ValueError as exc:  # sklearn's InvalidParameterError names the parameter
                where = "search" if values else "params"
                raise CandidateError(f"candidate {label}: {where}: {exc}") from exc
    return checked


def validate_candidates(candidates: Any, problem_type: str | None = None) -> list[Candidate]:
    """Check a list of candidate dicts (non-empty, unique names) for `problem_type`;
    return them as `Candidate`s, normalised. None (the Param left empty) is the problem
    type's defaults.

    Accepts a JSON string too (an Airflow Param may arrive as text).
    """
    if candidates is None:
        candidates = default_candidates(problem_type)
    if isinstance(candidates, str):
        try:
            candidates = json.loads(candidates)
        except json.JSONDecodeError as exc:
            raise CandidateError(f"candidates: not valid JSON ({exc})") from exc
    if not isinstance(candidates, list | tuple) or not candidates:
        raise CandidateError("candidates must be a non-empty list of candidate dicts")
    out = []
    seen: set[str] = set()
    for index, candidate in enumerate(candidates):
        try:
            checked = validate_candidate(candidate, problem_type)
        except CandidateError as exc:
            raise CandidateError(f"candidates[{index}]: {exc}") from exc
        if checked["name"] in seen:
            raise CandidateError(
                f"candidates[{index}]: key 'name' {checked['name']!r} is used twice; "
                "names must be unique"
            )
        seen.add(checked["name"])
        out.append(Candidate(**checked))
    return out


def as_candidate(
    candidate: Candidate | dict[str, Any], problem_type: str | None = None
) -> Candidate:
    """A `Candidate` as is (it was validated when it was made), a dict validated once."""
    if isinstance(candidate, Candidate):
        return candidate
    return Candidate(**validate_candidate(candidate, problem_type))


def make_estimator(
    candidate: Candidate | dict[str, Any], seed: int | None = 42, problem_type: str | None = None
) -> Any:
    """The unfitted estimator for `candidate` (a regressor when `problem_type` is
    regression; for an import path, what the class or factory returns).

    `random_state` is set to `seed` when a built-in estimator has one and the candidate's
    params do not set it.
    """
    from include.ml_pipeline.training import custom

    checked = as_candidate(candidate, problem_type)
    kind = checked.estimator
    if custom.is_import_path(kind):
        try:
            return custom.build(kind, dict(checked.params), problem_type != REGRESSION)
        except custom.CustomEstimatorError as exc:
            raise CandidateError(f"candidate {checked.name!r}: {exc}") from exc
    if kind not in estimators_for(problem_type):
        raise CandidateError(
            f"candidate {checked.name!r}: estimator {kind!r} does not fit a "
            f"{problem_type or 'classification'} problem; use one of "
            f"{', '.join(sorted(estimators_for(problem_type)))}"
        )
    cls = _estimator_class(kind, problem_type)
    params = {**_BASE_PARAMS[kind], **checked.params}
    if "random_state" in cls().get_params(deep=False) and "random_state" not in params:
        params["random_state"] = seed
    return cls(**params)


def estimator_params(estimator: Any) -> dict[str, Any]:
    """The estimator's full, flat parameter dict with values MLflow can log as params."""
    out = {}
    get_params = getattr(estimator, "get_params", None)  # a custom estimator may lack it
    for key, value in sorted((get_params(deep=False) if get_params else {}).items()):
        out[key] = value if isinstance(value, str | int | float | bool) else repr(value)
    return out
