"""Builds one connector per configured source, by kind."""

from __future__ import annotations

from connectors.base import Connector, ConnectorContext
from connectors.docs import DocsConnector
from connectors.http import HttpConnector
from connectors.sql import SqlConnector

KINDS: dict[str, type[Connector]] = {
    DocsConnector.kind: DocsConnector,
    HttpConnector.kind: HttpConnector,
    SqlConnector.kind: SqlConnector,
}


def build_connectors(context: ConnectorContext) -> dict[str, Connector]:
    """Connectors by source name. Unknown kinds were refused when the config was loaded."""
    return {s.name: KINDS[s.kind](s, context) for s in context.config.sources}
