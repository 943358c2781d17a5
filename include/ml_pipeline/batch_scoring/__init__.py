"""Batch scoring: whole tables scored with the champion, in bounded memory, in parts.

The work behind the `ml_batch_scoring` DAG, plain Python (no Airflow import), each module
one step of it:

* `source`: the input (one Parquet/CSV file or a folder of parts under any storage URI),
  its schema from metadata, the plan of parts (row groups of Parquet files, whole CSV
  files), and each part read as a stream of Arrow record batches (chunks);
* `contract_check`: the input checked against the pinned version's input contract before
  any row is scored (a missing or retyped column refused by name; extra columns passed
  through), the key columns, and the row checks that send a row to the rejects file;
* `model`: the pinned version loaded as the model API loads it (the compiled predictor,
  verified against the pipeline; the scikit-learn path for what the compiler does not
  know), scoring Arrow chunks column by column;
* `leaf_masks`: HistGradientBoosting, LightGBM and XGBoost trees as per-feature tables of
  leaf bitmasks (QuickScorer): a chunk's leaves found by lookups and ANDs, the raw scores
  the same floats as the library's;
* `shared`: the pinned version verified once (by the planning task) and published under
  the run's folder with its digest recorded in the plan, so each part loads the verified
  scorer instead of downloading, compiling and verifying the version again;
* `part`: one part scored chunk by chunk into its own Parquet objects (predictions,
  rejects, a drift sample, its report), each written under a temporary name and moved
  into place, so a retried part rewrites only itself;
* `manifest`: the run's manifest (rows in, out, refused and why, model version, input
  fingerprint), `complete` only when every planned part reported with the pinned version;
* `drift`: the scored batch's drift against the training split, with the online path's
  statistics, its report and its MLflow run.

Layout of one run under the storage root::

    <storage_uri>/batch_scoring/runs/<run key>/plan.json
                                            model/verified-v<version>-<digest>.pkl
                                            predictions/part-00000.parquet ...
                                            rejects/part-00000.parquet ...
                                            samples/part-00000.parquet ...
                                            parts/part-00000.json ...
                                            _manifest.json
                                            drift_report.json
"""
