"""Storage at the edges: typed models, migrations and small repository functions."""
