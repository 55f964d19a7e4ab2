"""Datasets, filtering, splits and negative sampling."""
