"""The S3 sink: Kafka Connect's S3SinkConnector (spec, upload, parquet, sink, manifest)."""
