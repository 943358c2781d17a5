"""Let `mlflow server` (3.17) start next to Airflow 2.11's SQLAlchemy 1.4.

MLflow 3.17's server modules annotate functions with SQLAlchemy 2.0 top-level names
(`sa.Engine`, `sa.ColumnElement`, ...) that SQLAlchemy 1.4 keeps in submodules, so the
server dies at import with `AttributeError: module 'sqlalchemy' has no attribute
'Engine'`. The tracking *client* and the in-process SQLite store do not need them.

This file is put on `PYTHONPATH` only for the server process (and the uvicorn worker it
spawns) by `devtools.mlflow_server`; Python imports `sitecustomize`
at start-up, which adds the aliases. It does nothing on SQLAlchemy 2.
"""

try:
    import sqlalchemy
    import sqlalchemy.engine
    import sqlalchemy.sql.expression

    _ALIASES = {
        "Engine": sqlalchemy.engine,
        "Connection": sqlalchemy.engine,
        "Row": sqlalchemy.engine,
        "ColumnElement": sqlalchemy.sql.expression,
        "Select": sqlalchemy.sql.expression,
        "Update": sqlalchemy.sql.expression,
    }
    for _name, _module in _ALIASES.items():
        if not hasattr(sqlalchemy, _name) and hasattr(_module, _name):
            setattr(sqlalchemy, _name, getattr(_module, _name))
except ImportError:  # pragma: no cover - no SQLAlchemy, nothing to patch
    pass
