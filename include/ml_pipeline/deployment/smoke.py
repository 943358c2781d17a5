"""The rows `pruebas_api` sends to the live API: a fixed sample of the run's own test split."""

from __future__ import annotations

from typing import Any


def smoke_frame(test_path: str, spec: dict[str, Any], rows: int = 32):
    """The first `rows` rows of the run's test split, feature columns only: the fixed
    sample `pruebas_api` sends, whatever the dataset."""
    import pandas as pd

    columns = [*spec["numeric"], *spec["categorical"]]
    return pd.read_parquet(test_path, columns=columns).head(rows)
