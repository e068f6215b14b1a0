"""Benchmark loaders: each turns an official local or hub copy into an Inspect dataset."""
