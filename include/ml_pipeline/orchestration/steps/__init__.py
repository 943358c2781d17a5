"""The step layer: one function per task, in a module named after the DAG it serves
(`deployment_dag/`, one module per task group of `ml_model_deployment_advanced`;
`monitoring_dag.py` for `ml_model_monitoring`). Each step reads its XCom inputs into the
payloads of `payloads.py`, calls the stage code with them, its Params and the bits of
Airflow context it needs, and returns the next payload as a dict: payloads are converted
at the XCom boundary only. Heavy libraries are imported inside the functions, so DAG
files that import this package stay cheap to parse."""
