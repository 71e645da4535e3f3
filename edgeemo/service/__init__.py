"""The daemon: its life (start, supervise, stop), the event path it wires (journal, writer, sinks), systemd notification."""
