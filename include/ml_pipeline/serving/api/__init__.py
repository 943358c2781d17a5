"""The HTTP service: `python -m include.ml_pipeline.serving.api` runs it (`__main__`).
`app` builds the FastAPI app from `routes` (the handlers), `state` (the model served now),
`settings`, `metrics`, `inference_log` (the writer of every prediction) and `openapi`
(the document; its description is `openapi.md`)."""
