"""The JDBC source: Kafka Connect's JdbcSourceConnector (spec, dialect, rows, offset, source)."""
