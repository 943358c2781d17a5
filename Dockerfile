# Astro Runtime 13.4.0 carries Apache Airflow 2.11.0, the version the local lock pins
# (astro-sdk-python 1.9.0 needs Airflow 2; 13.5+ moves to Airflow 2.11.1+, whose
# Flask-Session conflicts with astro-sdk's pin). requirements.txt and packages.txt are
# installed by the image's ONBUILD steps.
FROM quay.io/astronomer/astro-runtime:13.4.0

ENV ML_PIPELINE_HOME=/usr/local/airflow/.local \
    PYTHONPATH=/usr/local/airflow
