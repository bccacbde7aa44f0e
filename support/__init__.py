"""Helpers shared by the tests and the benchmarks (never imported by the application):
local stand-ins of Slack and model providers that speak their wire protocols, and Slack's
request signing. ``tests/`` and ``bench/`` both import from here; neither imports the other."""
