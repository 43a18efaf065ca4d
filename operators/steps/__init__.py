"""Thin Bytewax steps over the pure logic in :mod:`operators` (only ``flows`` imports them)."""
