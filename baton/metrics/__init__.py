"""Metrics: the cross-rank Averager, audio metrics, and the evaluation metrics by name (ViSQOL,
PESQ, STOI, ...: item_metrics, catalog, suite). Submodules are imported where used."""
