"""Your own models, as candidates of the training DAG (`"estimator": "package.module:name"`).

Everything under `include/` ships in the Astro image and is importable from the project
root, so a module here is spelt `include.custom_models.<module>:<name>` in the
`candidates` Param. `ratio_features` is the worked example.
"""
