"""The scikit-learn -> numpy/ONNX compiler and its verification: `compiler` turns a fitted
pipeline into a `predictor.CompiledPredictor` (plain arrays; tree ensembles as an ONNX
graph, `onnx_graph` + `trees`), and `verify` checks it against the pipeline it came from.
Nothing here knows about HTTP or MLflow."""
