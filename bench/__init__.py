"""Benchmarks of ifcflow against the RQ design it replaces and against raw arq: ``python -m bench``."""
