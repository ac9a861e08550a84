"""Workflows: a DAG of operations whose steps start when their dependencies complete."""
