"""The monitoring stage: is the deployed model still seeing the data it was trained on?

Drift statistics, the drift check of a champion and its reports (JSON, MLflow, HTML
dashboard), the retraining policy, and the inference log the model API writes. Plain
Python: no Airflow here; the DAGs reach it through `orchestration.steps`.
"""
