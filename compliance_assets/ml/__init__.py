"""Risk-scoring assets: confirmed outcomes (labels), training features, models, scores and alerts."""
