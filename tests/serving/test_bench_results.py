"""The model API benchmark's comparisons (`benchmarks/bench_results.py`): the best peer
per cell and each cell's change against the kept results."""

from __future__ import annotations

import pytest

from benchmarks.bench_results import best_peer, changes


def cell(rps: float, p99_us: float = 1000.0) -> dict:
    return {"rps": rps, "p50_us": p99_us / 2, "p99_us": p99_us}


def test_best_peer_is_the_fastest_peer_in_that_cell_never_ours():
    runs = {
        "ours": {"1x8": cell(9000.0)},
        "mlflow": {"1x8": cell(300.0), "1x1": cell(200.0)},
        "mlserver": {"1x1": cell(170.0)},  # no batching: measured at 1 connection only
        "mlserver-batch": {"1x8": cell(760.0)},
    }
    assert best_peer(runs, "1x8") == ("mlserver-batch", runs["mlserver-batch"]["1x8"])
    assert best_peer(runs, "1x1") == ("mlflow", runs["mlflow"]["1x1"])
    assert best_peer({"ours": {"1x1": cell(1.0)}}, "1x1") is None


def test_changes_compare_each_cell_and_whole_figure_measured_in_both_runs():
    previous = {
        "hgb": {"runs": {"ours": {"1x1": cell(1000.0, 2000.0), "startup_s": 4.0}}},
        "lightgbm": {"runs": {"ours": {"1x1": cell(5.0)}}},
    }
    current = {
        "hgb": {
            "runs": {
                "ours": {"1x1": cell(1500.0, 1000.0), "100x1": cell(7.0), "startup_s": 2.0},
                "mlserver": {"1x1": cell(170.0)},  # not in the kept run: nothing to compare
            }
        },
        "logistic": {"runs": {"ours": {"1x1": cell(3.0)}}},
    }
    found = {
        (c["model"], c["server"], c["cell"], c["field"]): c for c in changes(previous, current)
    }
    assert set(found) == {
        ("hgb", "ours", "1x1", "rps"),
        ("hgb", "ours", "1x1", "p99_us"),
        ("hgb", "ours", "whole", "startup_s"),
    }
    assert found[("hgb", "ours", "1x1", "rps")]["change"] == pytest.approx(0.5)
    assert found[("hgb", "ours", "1x1", "p99_us")]["change"] == pytest.approx(-0.5)
    assert found[("hgb", "ours", "whole", "startup_s")]["previous"] == 4.0
    assert found[("hgb", "ours", "whole", "startup_s")]["change"] == pytest.approx(-0.5)
