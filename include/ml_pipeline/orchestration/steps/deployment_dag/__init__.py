"""Steps of the deployment DAG, `ml_model_deployment_advanced`
(`dags/ml_model_deployment_advanced.py`): one module per task group, one function per task."""
