"""How a registered model version becomes a `served.ServedModel`: `fetch` resolves and
downloads it (MLflow), `compile_worker` deserialises, compiles and verifies it
(scikit-learn), `load` runs both in this process or, for the API server, as two child
processes, and `artifact` reads and writes the serving artifact (the compiled predictor as
plain data, published at release)."""
