"""Concierge command line: ``python app.py serve|chat|ask|report|access|audit|db …``."""

from bot.cli import main

if __name__ == "__main__":
    main()
