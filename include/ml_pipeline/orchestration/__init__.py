"""The Airflow-facing layer: what the DAG files use to wire tasks (the 2.11/3.x
compatibility module, Params, default arguments, connections, Datasets/Assets, callbacks)
and the step functions each task calls. Stage code below it imports no Airflow."""
