"""The file connectors: Kafka Connect's FileStreamSource and FileStreamSink, exactly once."""
