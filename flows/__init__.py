"""Dataflows and entry points."""
