"""JDBC sink: Confluent's JdbcSinkConnector (insert, upsert, update, delete), exactly once."""
