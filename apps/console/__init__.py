"""The fraud operations console: review queue, lists, search and audit (docs/console.md)."""
