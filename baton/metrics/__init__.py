"""Metrics: the cross-rank Averager and audio metrics. Submodules are imported where used."""
