"""baton's own grids: `baton grid <name>` runs the explorer in `<name>.py`."""
