"""Transforms of the stream: pure features, rules and scoring, thin operators and sinks."""
