"""Deployment: the embedded stack, migrations and topic bootstrap."""
