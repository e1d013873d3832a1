"""The real-time lane: per-account state that computes the batch definition's features one event at a time."""
