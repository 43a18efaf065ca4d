"""Anomaly scorers: one protocol, batched scoring, versioned artifacts."""
