"""Local HTTP stand-ins for the internet services Concierge talks to (port 0, real wire
protocols): the Slack Web API (and Socket Mode), an OpenAI-compatible model server, and a
TCP proxy that can delay or cut connections. ``python -m support.standins.serve`` runs them
in a process of their own (the benchmarks do)."""
