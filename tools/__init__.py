"""The project's tools, one folder per job; run them from the repository root as `python -m tools.<job>.<name>`."""
