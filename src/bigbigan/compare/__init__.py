"""Comparing outputs: statistics, output files, layer-by-layer search and reports."""
