"""The model API's own process, one room per audience: `api/` (the HTTP service),
`loading/` (a registered version -> the served model, MLflow and scikit-learn in child
processes), `compiled/` (the scikit-learn -> numpy/ONNX compiler and its verification).
`batch.py` (a validated request) and `parsing.py` (request bodies -> batch) are shared by
the three. The Airflow side drives it from `deployment/api_client.py` and
`deployment/api_process.py`; nothing here imports those."""
