# Airflow with airconnect installed; docker-compose.yaml builds it for every Airflow service.
# The base image's Airflow version must match pyproject.toml's pin (tests/unit/test_compose.py).
FROM apache/airflow:3.3.2-python3.11
COPY --chown=airflow:root . /opt/airconnect-src
# Pin Airflow to the image's version so installing airconnect never up- or downgrades it.
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" "/opt/airconnect-src[retail]"
