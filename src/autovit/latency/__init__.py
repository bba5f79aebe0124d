"""Latency measurement, lookup tables and the latency model (paper 3.5)."""
