"""Investigations: investigators' decisions on alerts (append-only, fed back as training labels), alert
precision per scenario and rule, and the hand-off of HIGH alerts to case management."""
