"""A tuned search per candidate: the optional `search` block, run with Optuna.

    "search": {
        "n_trials": 20, "timeout_seconds": 60, "seed": 7,
        "params": {
            "learning_rate": {"type": "float", "low": 0.01, "high": 0.3, "log": true},
            "num_leaves": {"type": "int", "low": 8, "high": 64},
            "max_depth": {"type": "categorical", "choices": [3, 5, -1]}
        }
    }

`validate_search` checks the block up front (at `iniciar_experimento`) and names the bad
key. `run_search` tunes on the validation split: each trial's values override the
candidate's `params`, the pipeline is fitted on the train split and scored on the
validation split by the selection metric. The sampler is Optuna's `TPESampler` seeded with
`seed` (default: the run's seed) and trials run one at a time, so the same seed gives the
same trials and the same best parameters (unless `timeout_seconds` cuts the search short:
then fewer trials ran). Hopeless trials are pruned by a `MedianPruner` on intermediate
values: with enough training rows a trial is first fitted on a quarter of them (seeded
subsample) and scored; a trial whose quarter-data score is worse than the median of the
earlier trials at that step stops there, without the full fit. A trial whose fit fails
(e.g. a combination the estimator refuses) is recorded as failed and the search goes on.

Every trial is a nested MLflow run under the candidate's run (role `trial`): its values
as params, the validation metric per step. The candidate's run gets the best values
(`search/best_params.json`), the history (`search/history.csv`, `search/history.json`)
and the counts (`search_trials_complete`, `search_trials_pruned`, `search_trials_failed`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

SEARCH_KEYS = frozenset({"n_trials", "timeout_seconds", "seed", "params"})
SPACE_TYPES = ("int", "float", "categorical")
MAX_TRIALS = 1000
#: The training rows a trial first fits on (then all of them), when there are enough.
PRUNING_FRACTION = 0.25
PRUNING_MIN_ROWS = 400
ARTIFACT_DIR = "search"
TRIAL_ROLE = "trial"


class SearchError(ValueError):
    """A bad `search` block; the message names the key, the rule and the fix."""


class _TrialFailed(RuntimeError):
    """One trial's fit or score failed (recorded; the search goes on)."""


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _space(name: str, spec: Any, where: str) -> dict[str, Any]:
    at = f"{where}.params.{name}"
    if not isinstance(spec, dict):
        raise SearchError(f"{at} must be an object with a 'type'; got {type(spec).__name__}")
    kind = spec.get("type")
    if kind not in SPACE_TYPES:
        raise SearchError(f"{at}.type must be one of {', '.join(SPACE_TYPES)}; got {kind!r}")
    if kind == "categorical":
        unknown = sorted(set(spec) - {"type", "choices"})
        choices = spec.get("choices")
        if unknown:
            raise SearchError(f"{at}: unknown key(s) {unknown}; categorical takes 'choices'")
        if not isinstance(choices, list) or not choices:
            raise SearchError(f"{at}.choices must be a non-empty list; got {choices!r}")
        for choice in choices:
            if choice is not None and not isinstance(choice, str | bool | int | float):
                raise SearchError(f"{at}.choices: {choice!r} is not a string, number, bool or null")
        return {"type": kind, "choices": list(choices)}
    allowed = {"type", "low", "high", "log", "step"}
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise SearchError(f"{at}: unknown key(s) {unknown}; {kind} takes low, high, log, step")
    low: Any = spec.get("low")
    high: Any = spec.get("high")
    for key, value in (("low", low), ("high", high)):
        if not _number(value) or (kind == "int" and not isinstance(value, int)):
            need = "a whole number" if kind == "int" else "a finite number"
            raise SearchError(f"{at}.{key} must be {need}; got {value!r}")
    if not low < high:
        raise SearchError(f"{at}: low ({low}) must be below high ({high})")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise SearchError(f"{at}.log must be true or false; got {log!r}")
    if log and low <= 0:
        raise SearchError(f"{at}: a log range needs low > 0; got low {low}")
    out: dict[str, Any] = {"type": kind, "low": low, "high": high, "log": log}
    if "step" in spec:
        step = spec["step"]
        if not _number(step) or step <= 0 or (kind == "int" and not isinstance(step, int)):
            raise SearchError(f"{at}.step must be a positive number; got {step!r}")
        if log:
            raise SearchError(f"{at}: step and log cannot be combined (Optuna refuses it)")
        out["step"] = step
    return out


def validate_search(search: Any, where: str = "search") -> dict[str, Any] | None:
    """A normalised copy of a `search` block (None stays None); `SearchError` names the
    bad key. Whether the estimator takes the parameter names is checked by the caller."""
    if search is None:
        return None
    if not isinstance(search, dict):
        raise SearchError(f"{where} must be an object; got {type(search).__name__}")
    unknown = sorted(set(search) - SEARCH_KEYS)
    if unknown:
        raise SearchError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; allowed keys are "
            f"{', '.join(sorted(SEARCH_KEYS))}"
        )
    n_trials = search.get("n_trials")
    if (
        not isinstance(n_trials, int)
        or isinstance(n_trials, bool)
        or not 1 <= n_trials <= MAX_TRIALS
    ):
        raise SearchError(
            f"{where}.n_trials must be a whole number 1-{MAX_TRIALS}; got {n_trials!r}"
        )
    timeout = search.get("timeout_seconds")
    if timeout is not None and (not _number(timeout) or timeout <= 0):
        raise SearchError(f"{where}.timeout_seconds must be a positive number; got {timeout!r}")
    seed = search.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise SearchError(f"{where}.seed must be a whole number; got {seed!r}")
    params = search.get("params")
    if not isinstance(params, dict) or not params:
        raise SearchError(
            f"{where}.params must be a non-empty object of parameter name -> range, e.g. "
            '{"learning_rate": {"type": "float", "low": 0.01, "high": 0.3, "log": true}}'
        )
    return {
        "n_trials": n_trials,
        "timeout_seconds": timeout,
        "seed": seed,
        "params": {str(name): _space(str(name), spec, where) for name, spec in params.items()},
    }


def corner_values(search: dict[str, Any]) -> list[dict[str, Any]]:
    """Parameter sets at the edges of the space (every low, every high, each choice), to
    check up front that the estimator accepts them."""
    spaces = search["params"]
    width = max(len(s["choices"]) if s["type"] == "categorical" else 2 for s in spaces.values())
    out = []
    for i in range(width):
        values = {}
        for name, space in spaces.items():
            if space["type"] == "categorical":
                values[name] = space["choices"][min(i, len(space["choices"]) - 1)]
            else:
                values[name] = space["low"] if i == 0 else space["high"]
        out.append(values)
    return out


def _suggest(trial: Any, name: str, space: dict[str, Any]) -> Any:
    if space["type"] == "categorical":
        return trial.suggest_categorical(name, space["choices"])
    suggest = trial.suggest_int if space["type"] == "int" else trial.suggest_float
    if "step" in space:
        return suggest(name, space["low"], space["high"], step=space["step"])
    return suggest(name, space["low"], space["high"], log=space["log"])


@dataclasses.dataclass(frozen=True)
class SearchOutcome:
    """The best values, their validation score, and every trial."""

    best_params: dict[str, Any]
    best_value: float
    metric: str
    history: list[dict[str, Any]]

    def count(self, state: str) -> int:
        return sum(1 for trial in self.history if trial["state"] == state)


def _subsample(X: Any, y: Any, fraction: float, seed: int, classification: bool) -> Any:
    import numpy as np

    rows = len(X)
    if rows < PRUNING_MIN_ROWS:
        return None
    picked = np.sort(np.random.default_rng(seed).permutation(rows)[: int(rows * fraction)])
    y_part = y.iloc[picked]
    if classification and y_part.nunique() < y.nunique():
        return None  # a class missing from the quarter: no early step
    return X.iloc[picked], y_part


def run_search(
    search: dict[str, Any],
    build: Callable[[dict[str, Any]], Any],
    data: tuple[Any, Any, Any, Any],
    *,
    problem_type: str | None,
    metric: str,
    seed: int,
    candidate: str,
    experiment_id: str,
) -> SearchOutcome:
    """Tune `search["params"]` on the validation split inside the active MLflow run (the
    candidate's); `build(values)` returns an unfitted model with those values, `data` is
    (X_train, y_train, X_val, y_val). Raises `SearchError` if no trial completed."""
    import mlflow
    import optuna

    from include.ml_pipeline.names import GREATER_IS_BETTER, ROLE_TAG
    from include.ml_pipeline.training.metrics import score_model

    X_train, y_train, X_val, y_val = data
    seed = search["seed"] if search.get("seed") is not None else seed
    greater = GREATER_IS_BETTER[metric]
    classification = problem_type != "regression"
    early = _subsample(X_train, y_train, PRUNING_FRACTION, seed, classification)
    history: list[dict[str, Any]] = []

    def objective(trial: Any) -> float:
        values = {name: _suggest(trial, name, s) for name, s in search["params"].items()}
        record: dict[str, Any] = {"number": trial.number, "params": values, "steps": {}}
        history.append(record)
        started = time.perf_counter()
        with mlflow.start_run(
            experiment_id=experiment_id,
            run_name=f"{candidate}.trial-{trial.number:03d}",
            nested=True,
            tags={ROLE_TAG: TRIAL_ROLE, "ml_pipeline.trial": str(trial.number)},
        ):
            mlflow.log_params(values)
            try:
                steps = (
                    [(0, early), (1, (X_train, y_train))] if early else [(0, (X_train, y_train))]
                )
                value = math.nan
                for step, (X, y) in steps:
                    model = build(values).fit(X, y)
                    value = float(score_model(model, X_val, y_val, problem_type)[metric])
                    record["steps"][step] = value
                    mlflow.log_metric(f"validation_{metric}", value, step=step)
                    if not math.isfinite(value):
                        raise ValueError(f"validation {metric} is {value}")
                    trial.report(value, step)
                    if step < len(steps) - 1 and trial.should_prune():
                        record["state"] = "pruned"
                        raise optuna.TrialPruned()
                record.update(state="complete", value=value)
                return value
            except optuna.TrialPruned:
                raise
            except Exception as exc:  # this combination of values: the search goes on
                record.update(state="failed", error=f"{type(exc).__name__}: {exc}")
                mlflow.set_tag("ml_pipeline.trial_error", record["error"][:500])
                raise _TrialFailed(record["error"]) from exc
            finally:
                record["seconds"] = round(time.perf_counter() - started, 3)
                mlflow.set_tag("ml_pipeline.trial_state", record.get("state", "failed"))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize" if greater else "minimize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
    )
    study.optimize(
        objective,
        n_trials=search["n_trials"],
        timeout=search.get("timeout_seconds"),
        catch=(_TrialFailed,),
        gc_after_trial=False,
    )
    complete = [t for t in history if t.get("state") == "complete"]
    if not complete:
        errors = "; ".join(sorted({t.get("error", t.get("state", "")) for t in history}))
        raise SearchError(
            f"candidate {candidate!r}: no search trial completed ({len(history)} tried): "
            f"{errors}; narrow the search ranges"
        )
    best = study.best_trial
    return SearchOutcome(
        best_params=dict(best.params),
        best_value=float(best.value) if best.value is not None else math.nan,
        metric=metric,
        history=history,
    )


def log_outcome(outcome: SearchOutcome) -> None:
    """The best values, the history and the counts on the active (candidate's) run."""
    import mlflow
    import pandas as pd

    mlflow.log_dict(outcome.best_params, f"{ARTIFACT_DIR}/best_params.json")
    mlflow.log_dict(
        {"metric": outcome.metric, "best_value": outcome.best_value, "trials": outcome.history},
        f"{ARTIFACT_DIR}/history.json",
    )
    rows = [
        {
            "number": t["number"],
            "state": t.get("state"),
            f"validation_{outcome.metric}": t.get("value"),
            "seconds": t.get("seconds"),
            **{f"param_{k}": v for k, v in t["params"].items()},
        }
        for t in outcome.history
    ]
    mlflow.log_text(pd.DataFrame(rows).to_csv(index=False), f"{ARTIFACT_DIR}/history.csv")
    mlflow.log_metrics(
        {
            f"search_best_validation_{outcome.metric}": outcome.best_value,
            "search_trials_complete": outcome.count("complete"),
            "search_trials_pruned": outcome.count("pruned"),
            "search_trials_failed": outcome.count("failed"),
        }
    )
