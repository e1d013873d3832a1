"""Serving compliance users: BI tables and the daily dashboard."""
