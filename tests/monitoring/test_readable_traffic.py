"""The deployment drift check reads only the logged requests this model could have been
sent: the log also holds other models' traffic (another contract)."""

from __future__ import annotations

import pandas as pd

from include.ml_pipeline.features import FeatureSpec
from include.ml_pipeline.monitoring.deployment_drift import readable_traffic

SPEC = FeatureSpec(target="churn", numeric=["age", "tenure"], categorical=["region"])


def test_rows_of_another_contract_are_left_out():
    log = pd.DataFrame(
        {
            "age": [41, None, "adult", 30],  # "adult": a text-age model's request
            "tenure": [12, 3, None, 1],
            "region": ["north", "south", "east", None],
        }
    )
    kept = readable_traffic(log, SPEC)
    assert list(kept.index) == [0, 1, 3]  # missing values are fine, text in a number is not


def test_traffic_without_one_of_the_features_is_not_this_models():
    log = pd.DataFrame({"age": [41], "region": ["north"]})  # no "tenure" column at all
    assert readable_traffic(log, SPEC).empty
    assert readable_traffic(log.iloc[0:0], SPEC).empty
