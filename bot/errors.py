"""Errors that carry a message meant for a person, not a traceback."""


class ConciergeError(Exception):
    """Base class: ``str(error)`` is a complete, human-readable sentence."""


class UsageError(ConciergeError):
    """The person asked for something malformed (exit code 2 on the command line)."""


class ConfigError(ConciergeError):
    """The workspace config file is missing or invalid."""
