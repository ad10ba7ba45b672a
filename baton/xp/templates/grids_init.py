"""The project's grids: `baton grid NAME` runs grids/NAME.py (see baton.toml)."""
