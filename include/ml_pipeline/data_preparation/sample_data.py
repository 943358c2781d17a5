"""Sample data: a customer-churn-like table with a learnable target.

Numeric and categorical columns, a few percent missing values, and a target `churn`
("yes"/"no") drawn from a logistic model of the features plus noise, so that a good
classifier reaches a test ROC AUC of about 0.85. `drift=True` shifts the feature
distributions (prices up, shorter tenures, more month-to-month contracts and support
tickets) for the monitoring stage.

`problem="regression"` gives the same customers with a numeric target instead of `churn`:
`REGRESSION_TARGET` (`next_year_spend`, what the customer will spend in the next twelve
months), a non-linear function of the features plus noise, about 8% of them zero (the
customers who leave at once), so that a good regressor reaches an R^2 of about 0.7.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from include.ml_pipeline.features import FeatureSpec

TARGET = "churn"
REGRESSION_TARGET = "next_year_spend"
PROBLEMS = ("binary", "regression")
NUMERIC_COLUMNS = ["tenure_months", "monthly_charges", "total_charges", "age", "support_tickets"]
CATEGORICAL_COLUMNS = [
    "contract_type",
    "payment_method",
    "internet_service",
    "region",
    "has_partner",
    "paperless_billing",
]


def churn_spec() -> FeatureSpec:
    """The feature spec of these columns: target `churn`, the numeric and categorical ones."""
    from include.ml_pipeline.features import FeatureSpec

    return FeatureSpec(TARGET, list(NUMERIC_COLUMNS), list(CATEGORICAL_COLUMNS))


def generate_churn_frame(
    rows: int, seed: int = 42, drift: bool = False, problem: str = "binary"
) -> pd.DataFrame:
    """Return `rows` customers (1 <= rows <= 10,000,000) as a DataFrame; the target is
    `churn` (yes/no), or `next_year_spend` (a number) when `problem` is regression."""
    import numpy as np
    import pandas as pd

    if not 1 <= rows <= 10_000_000:
        raise ValueError(f"rows must be between 1 and 10,000,000; got {rows}")
    if problem not in PROBLEMS:
        raise ValueError(f"problem must be one of {', '.join(PROBLEMS)}; got {problem!r}")
    rng = np.random.default_rng(seed)

    contract_p = [0.70, 0.18, 0.12] if drift else [0.50, 0.27, 0.23]
    contract = rng.choice(["month_to_month", "one_year", "two_year"], rows, p=contract_p)
    internet = rng.choice(["dsl", "fiber_optic", "none"], rows, p=[0.35, 0.45, 0.20])
    payment = rng.choice(
        ["electronic_check", "mailed_check", "bank_transfer", "credit_card"],
        rows,
        p=[0.34, 0.22, 0.22, 0.22],
    ).astype(object)
    region = rng.choice(["north", "south", "east", "west"], rows, p=[0.3, 0.25, 0.25, 0.2])
    partner = rng.choice(["yes", "no"], rows, p=[0.48, 0.52])
    paperless = rng.choice(["yes", "no"], rows, p=[0.6, 0.4])

    tenure_scale = 14.0 if drift else 24.0
    tenure = np.clip(rng.exponential(tenure_scale, rows), 0, 72).round()
    base_charge = np.where(internet == "fiber_optic", 80.0, np.where(internet == "dsl", 55.0, 25.0))
    monthly = np.clip(base_charge + rng.normal(15.0 if drift else 0.0, 12.0, rows), 18.0, 160.0)
    monthly = monthly.round(2)
    total = (tenure * monthly * rng.normal(1.0, 0.05, rows)).round(2)
    age = np.clip(rng.normal(45, 15, rows), 18, 90).round()
    tickets = rng.poisson(2.5 if drift else 1.2, rows).astype(float)

    logit = (
        -1.2
        + 1.6 * (contract == "month_to_month")
        - 0.9 * (contract == "two_year")
        - 0.045 * tenure
        + 0.022 * (monthly - 65.0)
        + 0.45 * tickets
        + 0.6 * (payment == "electronic_check")
        + 0.4 * (internet == "fiber_optic")
        - 0.3 * (partner == "yes")
        + 0.2 * (paperless == "yes")
        - 0.01 * (age - 45.0)
        + rng.normal(0.0, 0.5, rows)
    )
    churn = np.where(rng.random(rows) < 1.0 / (1.0 + np.exp(-logit)), "yes", "no")
    # Months the customer stays next year: fewer the likelier they churn, none for a
    # share of the month-to-month ones; spend = months x charge, plus extras and noise.
    stay = 12.0 / (1.0 + np.exp(logit - 1.0))
    stay = np.where((contract == "month_to_month") & (rng.random(rows) < 0.15), 0.0, stay)
    spend = stay * monthly * (1.0 + 0.05 * (paperless == "yes")) + 25.0 * tickets * (stay > 0)
    spend = np.maximum(spend + rng.normal(0.0, 40.0, rows) * (stay > 0), 0.0).round(2)

    # Missing values, as real exports have them.
    tenure[rng.random(rows) < 0.02] = np.nan
    total[np.isnan(tenure)] = np.nan
    age[rng.random(rows) < 0.03] = np.nan
    payment[rng.random(rows) < 0.03] = None

    return pd.DataFrame(
        {
            "tenure_months": tenure,
            "monthly_charges": monthly,
            "total_charges": total,
            "age": age,
            "support_tickets": tickets,
            "contract_type": contract,
            "payment_method": payment,
            "internet_service": internet,
            "region": region,
            "has_partner": partner,
            "paperless_billing": paperless,
            **({REGRESSION_TARGET: spend} if problem == "regression" else {TARGET: churn}),
        }
    )


def write_dataset(
    path: str | Path, rows: int, seed: int = 42, drift: bool = False, problem: str = "binary"
) -> Path:
    """Write the sample table to `path` (.csv or .parquet) in chunks; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    chunk = 250_000
    tmp = path.with_name(path.name + ".tmp")
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        writer = None
        for i, start in enumerate(range(0, rows, chunk)):
            frame = generate_churn_frame(min(chunk, rows - start), seed + i, drift, problem)
            table = pa.Table.from_pandas(frame, preserve_index=False)
            writer = writer or pq.ParquetWriter(tmp, table.schema)
            writer.write_table(table)
        if writer:
            writer.close()
    else:
        with tmp.open("w", newline="") as handle:
            for i, start in enumerate(range(0, rows, chunk)):
                frame = generate_churn_frame(min(chunk, rows - start), seed + i, drift, problem)
                frame.to_csv(handle, index=False, header=(i == 0), float_format="%.6g")
    tmp.replace(path)  # readers never see a half-written file
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--drift", action="store_true")
    parser.add_argument("--problem", choices=PROBLEMS, default="binary")
    args = parser.parse_args(argv)
    print(write_dataset(args.path, args.rows, args.seed, args.drift, args.problem))


if __name__ == "__main__":
    main()
