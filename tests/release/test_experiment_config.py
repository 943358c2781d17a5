"""The model API's experiment logic without a server: the stable canary split, the
breaker, the experiment body's rules and the experiments file."""

from __future__ import annotations

import pytest

from include.ml_pipeline.serving.api.experiment import (
    Breaker,
    ExperimentConfig,
    ExperimentError,
    choose_arm,
    key_share,
    read_experiments,
    write_experiment,
)


def test_split_is_a_stable_hash_and_respects_the_share():
    keys = [f"customer-{i}" for i in range(20_000)]
    assert key_share("customer-1") == pytest.approx(0.95405, abs=1e-5)  # fixed across runs
    arms = [choose_arm(0.05, key) for key in keys]
    assert arms == [choose_arm(0.05, key) for key in keys]
    share = arms.count("challenger") / len(keys)
    assert 0.045 <= share <= 0.055  # 0.05 +- 3 sd of binomial(20000, 0.05)
    # a bigger share only adds keys: a customer on the challenger at 5% stays there at 25%
    wider = [choose_arm(0.25, key) for key in keys]
    assert all(w == "challenger" for a, w in zip(arms, wider, strict=True) if a == "challenger")
    assert choose_arm(0.0, "x") == "champion"
    assert choose_arm(1.0, "x") == "challenger"
    assert choose_arm(0.5, None, draw=lambda: 0.7) == "champion"  # no key: a coin
    assert choose_arm(0.5, None, draw=lambda: 0.2) == "challenger"


def test_breaker_opens_past_the_error_rate_after_the_minimum():
    breaker = Breaker(max_error_rate=0.2, min_requests=10, window=20)
    for _ in range(3):
        breaker.record(True)
    assert not breaker.open  # 3 of 3, but fewer than 10 seen
    breaker = Breaker(max_error_rate=0.2, min_requests=10, window=20)
    for error in [False] * 8 + [True] * 2 + [False] * 10:
        breaker.record(error)
    assert not breaker.open  # 2 of 10 = 0.2 (not past it), then 2 of 20
    breaker.record(True)  # the window slides: 3 of the last 20
    breaker.record(True)  # 4 of 20 = 0.2: not past
    assert not breaker.open
    breaker.record(True)  # 5 of 20
    assert breaker.open
    assert "5/20" in breaker.reason
    breaker.record(False)
    assert breaker.open  # stays open until the experiment is set again


def test_experiment_body_rules_are_named():
    config = ExperimentConfig.parse({"mode": "canary", "share": 0.25, "key_column": "region"})
    assert (config.mode, config.share, config.key_column) == ("canary", 0.25, "region")
    assert config.started_at
    for body, named in (
        ({"mode": "blue-green"}, "mode must be one of shadow, canary"),
        ({"mode": "canary"}, "a canary needs share"),
        ({"mode": "canary", "share": 1.5}, "share must be within 0.0..1.0"),
        ({"mode": "shadow", "timeout_ms": "fast"}, "timeout_ms must be a number"),
        ({"mode": "shadow", "shares": 0.1}, "unknown field(s) shares"),
        ({"mode": "canary", "share": 0.1, "key_column": ""}, "key_column must be a column"),
        ([], "must be a JSON object"),
    ):
        with pytest.raises(ExperimentError, match=named.replace("(", r"\(").replace(")", r"\)")):
            ExperimentConfig.parse(body)


def test_experiments_file_keeps_each_models_experiment(tmp_path):
    path = str(tmp_path / "api" / "experiments.json")
    assert read_experiments(path) == {}
    shadow = ExperimentConfig.parse({"mode": "shadow"})
    canary = ExperimentConfig.parse({"mode": "canary", "share": 0.1})
    write_experiment(path, "churn", shadow)
    write_experiment(path, "region", canary)
    assert read_experiments(path) == {"churn": shadow, "region": canary}
    write_experiment(path, "churn", None)
    assert read_experiments(path) == {"region": canary}
