"""Scheduled jobs (the weekly report, retention, re-indexing, review reminders, grant expiry),
run exactly once per trigger across instances."""
