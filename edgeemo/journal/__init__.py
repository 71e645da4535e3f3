"""The event journal: the one writer of events, and the durable record every sink reads."""
