"""airconnect: Kafka Connect-style connectors run by Apache Airflow 3."""

__version__ = "0.1.0"
