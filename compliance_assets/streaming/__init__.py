"""Streaming ingest: transactions from Kafka (Event Hubs in production) and a load generator for it."""
