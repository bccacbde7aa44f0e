"""Concierge: a Slack assistant that answers from internal sources, done properly."""

from pathlib import Path

#: Root of the installed tree: holds prompts/ and examples/ beside bot/.
PACKAGE_ROOT = Path(__file__).resolve().parent.parent
