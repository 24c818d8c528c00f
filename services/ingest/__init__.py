"""The streaming ingest: Kafka ``transactions`` and ``labels`` into the feature store."""
