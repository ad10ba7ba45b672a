"""Grids of the audio language model pipeline (docs/pipeline.md)."""
