"""A CeleryExecutor cluster on loopback, for the distributed test and `make distributed`.

Developer-only code (not in the image): it starts, in one temporary folder,

- PostgreSQL 15 (Debian's `initdb`/`pg_ctl`, run as the `postgres` user when we are root)
  as the Airflow metadata database and the Celery result backend;
- Redis (`redis-server`, no persistence) as the Celery broker;
- moto's S3 server with one bucket: the pipeline's storage root
  (`ML_PIPELINE_STORAGE=s3://<bucket>/pipeline`) and MLflow's artifacts;
- an MLflow tracking server (its own SQLite store, `--artifacts-destination
  s3://<bucket>/mlflow`);
- the model API as its own service (`python -m include.ml_pipeline.serving.api`);
- Airflow: `airflow db migrate`, a scheduler and **two Celery workers**, each with its
  own empty working directory, HOME, TMPDIR, `ML_PIPELINE_HOME` and AIRFLOW_HOME (logs):
  no writable path is shared between them. Each worker's hostname (the task instances'
  `hostname` column) is its name (`hostname.worker_name`). On Airflow 3 also the API
  server (REST API v2 for triggering, the Task Execution API for the workers' tasks) and
  the DAG processor, one JWT secret for all (`rest.RestApi` is the REST client).

`cluster.Cluster` is the running thing; `scenario` runs the proof (a deployment run over
both workers, a monitoring run, a worker killed in the middle of `entrenar_modelo`) and
judges it; `python -m devtools.cluster` (`make distributed`) runs the same by hand and
prints where to look.
"""
