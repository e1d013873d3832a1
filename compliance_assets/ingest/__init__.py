"""Transactions ingest: bronze (raw deliveries), then silver, DLQ and dq_results from one validation pass."""
