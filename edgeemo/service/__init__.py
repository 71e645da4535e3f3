"""Daemon pieces: supervision of the worker threads."""
