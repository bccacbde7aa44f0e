"""Connectors: one module per kind of source, behind the small interface in ``base``."""

from connectors.base import Connector, ConnectorError, SourceUnavailable
from connectors.registry import build_connectors

__all__ = ["Connector", "ConnectorError", "SourceUnavailable", "build_connectors"]
