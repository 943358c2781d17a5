# Astro Runtime 13.4.0 carries Apache Airflow 2.11.0, the version the local lock pins
# (astro-sdk-python 1.9.0 needs Airflow 2; 13.5+ moves to Airflow 2.11.1+, whose
# Flask-Session conflicts with astro-sdk's pin). The image's ONBUILD steps install
# packages.txt and requirements.txt (each package pinned to the lock), then copy the
# project, requirements.lock included.
FROM quay.io/astronomer/astro-runtime:13.4.0

# The versions the tests ran, dependencies included: the packages of requirements.txt
# again, constrained by the lock (pip moves any preinstalled dependency that differs,
# e.g. the providers named in requirements.txt and cryptography for MLflow 3.17).
RUN pip install --no-cache-dir -r requirements.txt -c requirements.lock

# The pipeline's home (DuckDB warehouse, splits, reports, inference log): the named
# volume `pipeline-local` of docker-compose.override.yml is mounted here, not over the
# astro user's ~/.local. A new volume takes this folder's owner: astro (uid 50000),
# group 0, group-writable, the same as in Dockerfile.model-api.
USER root
RUN mkdir -p /usr/local/airflow/pipeline \
    && chown astro:0 /usr/local/airflow/pipeline \
    && chmod 2775 /usr/local/airflow/pipeline
USER astro

ENV ML_PIPELINE_HOME=/usr/local/airflow/pipeline \
    PYTHONPATH=/usr/local/airflow
