"""Daemon pieces: the daemon itself, worker supervision, systemd notification, metrics, the event path."""
