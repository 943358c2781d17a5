"""Candidates beyond the built-ins: LightGBM, XGBoost, your own estimator by import path,
and the `search` block; every bad one refused up front with the candidate, the path or
key, and the reason."""

from __future__ import annotations

import pandas as pd
import pytest

from include.ml_pipeline.features import FeatureSpec
from include.ml_pipeline.payloads import Candidate
from include.ml_pipeline.training.candidates import (
    CandidateError,
    make_estimator,
    validate_candidate,
    validate_candidates,
)
from include.ml_pipeline.training.probe import needs_probe, probe_candidates
from include.ml_pipeline.training.train import model_for, model_pip_requirements

RATIOS = "include.custom_models.ratio_features:ratio_boosting_classifier"
RATIOS_REG = "include.custom_models.ratio_features:ratio_boosting_regressor"
SEARCH = {
    "n_trials": 5,
    "timeout_seconds": 60,
    "seed": 7,
    "params": {
        "learning_rate": {"type": "float", "low": 0.01, "high": 0.3, "log": True},
        "num_leaves": {"type": "int", "low": 8, "high": 64},
        "max_depth": {"type": "categorical", "choices": [3, 5, -1]},
    },
}


@pytest.fixture
def one_thread():
    """OpenMP on a loaded 2-core machine: one thread, as the training task runs."""
    from include.ml_pipeline.training.data import limit_threads

    with limit_threads(1):
        yield


@pytest.fixture(scope="module")
def churn_frame(churn_splits) -> pd.DataFrame:
    return pd.read_parquet(churn_splits["validation"])


@pytest.mark.parametrize("problem", ["binary", "multiclass", "regression"])
@pytest.mark.parametrize("kind", ["lightgbm", "xgboost"])
def test_lightgbm_and_xgboost_are_kinds_of_every_problem_seeded_and_single_threaded(kind, problem):
    estimator = make_estimator({"name": "m", "estimator": kind}, 11, problem)
    suffix = "Regressor" if problem == "regression" else "Classifier"
    library = __import__(kind)
    family = "LGBM" if kind == "lightgbm" else "XGB"
    # the library's own scikit-learn estimator (a subclass for XGBoost's labels)
    assert isinstance(estimator, getattr(library, f"{family}{suffix}"))
    params = estimator.get_params()
    assert params["random_state"] == 11
    assert params["n_jobs"] == 1
    # any parameter of the library is accepted (the library checks it when fitting)
    checked = validate_candidate(
        {"name": "m", "estimator": kind, "params": {"min_child_weight": 2.0}}, problem
    )
    assert checked["params"] == {"min_child_weight": 2.0}


def test_xgboost_classifier_takes_text_labels_and_answers_in_them(
    churn_frame, churn_spec, one_thread
):
    candidate = Candidate("xgb", "xgboost", {"n_estimators": 20})
    model = model_for(candidate, churn_spec, 0)
    X = churn_frame[churn_spec.columns]
    from include.ml_pipeline.features import coerce_features

    model.fit(coerce_features(churn_frame, churn_spec), churn_frame["churn"])
    assert list(model.classes_) == ["no", "yes"]
    assert set(model.predict(coerce_features(X.head(50), churn_spec))) <= {"no", "yes"}
    assert model.named_steps["model"].get_booster() is not None  # the library's own booster
    # and the model API compiles it as an XGBoost model, answering in the text labels
    from include.ml_pipeline.serving.compiled.compiler import compile_pipeline
    from include.ml_pipeline.serving.compiled.verify import verification_batch, verify_predictor

    numeric, categorical = list(churn_spec.numeric), list(churn_spec.categorical)
    predictor = compile_pipeline(model, numeric, categorical)
    assert predictor.estimator_path == "onnx-xgboost"
    assert predictor.classes == ["no", "yes"]
    batch = verification_batch(model, numeric, categorical)
    assert verify_predictor(predictor, model, batch) is None


def _categorical_splits(model) -> int:
    """How many of a fitted LightGBM / XGBoost model's splits are on category sets."""
    import json

    if hasattr(model, "booster_"):  # LightGBM: decision_type "==" is a category-set split

        def count(node: dict) -> int:
            if "split_index" not in node:
                return 0
            here = node["decision_type"] == "=="
            return here + count(node["left_child"]) + count(node["right_child"])

        return sum(count(t["tree_structure"]) for t in model.booster_.dump_model()["tree_info"])

    def walk(node: dict) -> int:  # XGBoost: a list of categories as the split condition
        if "children" not in node:
            return 0
        here = isinstance(node["split_condition"], list)
        return here + sum(walk(child) for child in node["children"])

    return sum(walk(json.loads(t)) for t in model.get_booster().get_dump(dump_format="json"))


@pytest.mark.parametrize("problem", ["binary", "regression"])
@pytest.mark.parametrize("kind", ["lightgbm", "xgboost"])
def test_lightgbm_and_xgboost_candidates_split_categories_natively(
    kind, problem, churn_spec, one_thread
):
    """The candidate as a user's run builds it (`model_for`): the categorical columns as
    codes (one column each, unseen -1) and the library's own category-set splits, not
    one-hot columns; the built-in scikit-learn kinds keep one-hot. (What
    `benchmarks/bench_training.py` and `bench_lightgbm_categoricals.py` measure.)"""
    from include.ml_pipeline.data_preparation.sample_data import (
        REGRESSION_TARGET,
        generate_churn_frame,
    )
    from include.ml_pipeline.features import CATEGORICAL, UNSEEN_CODE, coerce_features

    spec = churn_spec
    if problem == "regression":
        spec = FeatureSpec(REGRESSION_TARGET, spec.numeric, spec.categorical, "regression")
    frame = generate_churn_frame(1500, seed=5, problem=problem)
    X, y = coerce_features(frame, spec), frame[spec.target]
    model = model_for(Candidate("m", kind, {"n_estimators": 40}), spec, 0).fit(X, y)

    encoder = model.named_steps["preprocess"].named_transformers_[CATEGORICAL].steps[-1]
    assert encoder[0] == "ordinal"
    assert encoder[1].unknown_value == UNSEEN_CODE
    fitted = model.named_steps["model"]
    assert fitted.n_features_in_ == len(spec.numeric) + len(spec.categorical)
    assert _categorical_splits(fitted) > 0, "no category-set split: the codes were numbers"

    # unseen and missing categories are answered, like any row
    rows = X.head(20).copy()
    rows.loc[rows.index[:10], spec.categorical[0]] = "never_seen_before"
    rows.loc[rows.index[10:], spec.categorical[1]] = None
    answers = model.predict(rows)
    assert len(answers) == 20
    if problem == "regression":
        assert pd.Series(answers).notna().all()
    else:
        assert set(answers) <= {"no", "yes"}

    # the scikit-learn kinds are unchanged: one-hot columns
    hgb = model_for(Candidate("h", "hist_gradient_boosting", {"max_iter": 5}), spec, 0).fit(X, y)
    steps = hgb.named_steps["preprocess"].named_transformers_[CATEGORICAL].steps
    assert steps[-1][0] == "onehot"


def test_model_requirements_name_the_family_packages():
    assert any(
        r.startswith("lightgbm==") for r in model_pip_requirements(["lightgbm.basic.Booster"])
    )
    assert any(
        r.startswith("xgboost-cpu==") for r in model_pip_requirements(["xgboost.core.Booster"])
    )
    assert not any("lightgbm" in r or "xgboost" in r for r in model_pip_requirements([]))


def test_a_custom_class_or_factory_is_a_candidate():
    (cls, factory) = validate_candidates(
        [
            {
                "name": "knn",
                "estimator": "sklearn.neighbors:KNeighborsClassifier",
                "params": {"n_neighbors": 7},
            },
            {"name": "ratios", "estimator": RATIOS, "input": "raw", "params": {"max_iter": 20}},
        ],
        "binary",
    )
    assert cls.input == "preprocessed"
    assert "input" not in cls.to_dict()
    assert factory.to_dict()["input"] == "raw"
    assert type(make_estimator(cls)).__name__ == "KNeighborsClassifier"
    assert make_estimator(cls).n_neighbors == 7
    pipeline = make_estimator(factory)
    assert [name for name, _ in pipeline.steps] == ["ratios", "preprocess", "model"]
    assert needs_probe(cls)
    assert needs_probe(factory)
    assert not needs_probe(Candidate("lr", "logistic_regression"))


def test_the_custom_example_adds_ratio_features_and_learns(churn_frame, churn_spec, one_thread):
    from include.ml_pipeline.features import coerce_features

    spec = churn_spec
    X, y = coerce_features(churn_frame, spec), churn_frame["churn"]
    model = model_for(Candidate("r", RATIOS, {"max_iter": 30}, input="raw"), spec, 0).fit(X, y)
    added = model.named_steps["ratios"].transform(X.head(3))
    expected = X["total_charges"].head(3) / X["tenure_months"].head(3)
    pd.testing.assert_series_equal(
        added["total_charges_per_tenure_months"], expected, check_names=False
    )
    assert model.predict_proba(X.head(5)).shape == (5, 2)
    reg_spec = FeatureSpec(
        "monthly_charges",
        [c for c in spec.numeric if c != "monthly_charges"],
        list(spec.categorical),
        problem_type="regression",
    )
    reg = model_for(Candidate("r", RATIOS_REG, {"max_iter": 30}, input="raw"), reg_spec, 0)
    reg.fit(coerce_features(churn_frame, reg_spec), churn_frame["monthly_charges"])


@pytest.mark.parametrize(
    ("estimator", "problem", "message"),
    [
        (
            "no_such_package.models:Model",
            "binary",
            r"'no_such_package.models:Model' does not import: ModuleNotFoundError"
            r".*put the module under include/",
        ),
        (
            "sklearn.neighbors:NoSuchModel",
            "binary",
            r"module 'sklearn.neighbors' has no attribute 'NoSuchModel'",
        ),
        ("sklearn.neighbors:", "binary", "not an import path of the form package.module:name"),
        ("math:pi", "binary", "is a float, not a class or a factory"),
        (
            "collections:OrderedDict",
            "binary",
            r"gave a OrderedDict, which is not a scikit-learn estimator.*no fit, predict",
        ),
        ("sklearn.linear_model:LinearRegression", "binary", "no predict_proba"),
        ("sklearn.neighbors:KNeighborsClassifier", "regression", None),  # fine: has predict
    ],
)
def test_a_bad_import_path_is_refused_naming_candidate_path_and_reason(estimator, problem, message):
    candidate = {"name": "mine", "estimator": estimator}
    if message is None:
        validate_candidate(candidate, problem)
        return
    with pytest.raises(CandidateError, match=message) as caught:
        validate_candidates([candidate], problem)
    assert "candidate 'mine'" in str(caught.value)


def test_params_a_factory_does_not_take_are_refused():
    with pytest.raises(
        CandidateError, match=r"could not be built with params \{'depth': 3\}.*TypeError"
    ):
        validate_candidate(
            {"name": "r", "estimator": RATIOS, "input": "raw", "params": {"depth": 3}}
        )


def test_input_is_checked():
    with pytest.raises(CandidateError, match="key 'input' 'raw' is for your own estimator"):
        validate_candidate({"name": "l", "estimator": "lightgbm", "input": "raw"})
    with pytest.raises(CandidateError, match="key 'input' must be one of preprocessed, raw"):
        validate_candidate({"name": "l", "estimator": RATIOS, "input": "columns"})


@pytest.mark.parametrize(
    ("candidate", "message"),
    [
        (
            {
                "name": "bad_ratio",
                "estimator": RATIOS,
                "input": "raw",
                "params": {"ratios": [["nope", "tenure_months"]]},
            },
            r"candidate 'bad_ratio' \(estimator '.*ratio_boosting_classifier'\): the fit on a "
            r"\d+-row sample .* failed before any worker trained: ValueError: RatioFeatures: "
            r"column\(s\) nope not in the input",
        ),
        (
            {"name": "bad_lgbm", "estimator": "lightgbm", "params": {"num_leaves": 1}},
            r"candidate 'bad_lgbm' \(estimator 'lightgbm'\): the fit .* failed.*num_leaves",
        ),
    ],
)
def test_a_fit_that_fails_on_a_sample_is_refused(candidate, message, churn_frame, churn_spec):
    candidates = validate_candidates([candidate], "binary")
    with pytest.raises(CandidateError, match=message):
        probe_candidates(candidates, churn_frame, churn_spec, 0)


def test_probe_passes_good_candidates_quickly(churn_frame, churn_spec):
    candidates = validate_candidates(
        [
            {"name": "lgbm", "estimator": "lightgbm"},
            {"name": "xgb", "estimator": "xgboost"},
            {"name": "ratios", "estimator": RATIOS, "input": "raw"},
        ],
        "binary",
    )
    probe_candidates(candidates, churn_frame, churn_spec, 0)


def test_a_search_block_is_validated_and_normalised():
    checked = validate_candidate({"name": "s", "estimator": "lightgbm", "search": SEARCH})
    assert checked["search"]["params"]["num_leaves"] == {
        "type": "int",
        "low": 8,
        "high": 64,
        "log": False,
    }
    assert Candidate(**checked).to_dict()["search"]["n_trials"] == 5


def _search(**changes):
    search = {**SEARCH, "params": dict(SEARCH["params"])}
    for key, value in changes.items():
        if key.startswith("p_"):
            search["params"][key[2:]] = value
        else:
            search[key] = value
    return search


@pytest.mark.parametrize(
    ("kind", "search", "message"),
    [
        ("lightgbm", _search(n_trials=0), r"search.n_trials must be a whole number 1-1000; got 0"),
        ("lightgbm", _search(trials=3), r"search: unknown key\(s\) 'trials'"),
        (
            "lightgbm",
            _search(timeout_seconds=-1),
            "search.timeout_seconds must be a positive number",
        ),
        ("lightgbm", _search(params={}), "search.params must be a non-empty object"),
        (
            "lightgbm",
            _search(p_num_leaves={"type": "integer", "low": 8, "high": 64}),
            r"params.num_leaves.type must be one of int, float, categorical; got 'integer'",
        ),
        (
            "lightgbm",
            _search(p_num_leaves={"type": "int", "low": 64, "high": 8}),
            r"params.num_leaves: low \(64\) must be below high \(8\)",
        ),
        (
            "lightgbm",
            _search(p_num_leaves={"type": "int", "low": 8.5, "high": 64}),
            r"params.num_leaves.low must be a whole number; got 8.5",
        ),
        (
            "lightgbm",
            _search(p_learning_rate={"type": "float", "low": 0, "high": 0.3, "log": True}),
            r"params.learning_rate: a log range needs low > 0",
        ),
        (
            "lightgbm",
            _search(p_max_depth={"type": "categorical", "choices": []}),
            r"params.max_depth.choices must be a non-empty list",
        ),
        (
            "hist_gradient_boosting",
            _search(),
            r"params key\(s\) 'num_leaves' not accepted by HistGradientBoostingClassifier",
        ),
        (
            "hist_gradient_boosting",
            {
                "n_trials": 2,
                "params": {"learning_rate": {"type": "float", "low": -1.0, "high": 0.3}},
            },
            r"candidate 's': search: The 'learning_rate' parameter",
        ),
    ],
)
def test_a_bad_search_block_is_refused_naming_the_key(kind, search, message):
    with pytest.raises(CandidateError, match=message) as caught:
        validate_candidate({"name": "s", "estimator": kind, "search": search})
    assert "candidate 's'" in str(caught.value)


def test_a_search_over_a_custom_factory_checks_its_corners():
    search = {"n_trials": 2, "params": {"depth": {"type": "int", "low": 2, "high": 4}}}
    with pytest.raises(CandidateError, match=r"search values \{'depth': 2\}.*could not be built"):
        validate_candidate({"name": "r", "estimator": RATIOS, "input": "raw", "search": search})
