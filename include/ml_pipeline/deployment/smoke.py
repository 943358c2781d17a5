"""The rows `pruebas_api` sends to the live API: a fixed sample of the run's own test split."""

from __future__ import annotations

from typing import Any

from include.ml_pipeline import storage


def smoke_frame(test_uri: str, spec: dict[str, Any], rows: int = 32):
    """The first `rows` rows of the run's test split (a `file://` or remote URI, read with
    the storage root's options), feature columns only: the fixed sample `pruebas_api`
    sends, whatever the dataset."""
    import pandas as pd

    columns = [*spec["numeric"], *spec["categorical"]]
    with storage.local_copy(test_uri) as local:
        return pd.read_parquet(local, columns=columns).head(rows)
