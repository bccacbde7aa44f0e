"""Owners' reports: numbers computed from the store, rendered as Markdown/HTML, CSV and PNG."""
