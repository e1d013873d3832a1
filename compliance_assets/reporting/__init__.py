"""Reporting for compliance and audit: reconciliation with the ledger and regulatory snapshots."""
