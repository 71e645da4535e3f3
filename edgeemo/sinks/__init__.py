"""Where events go once the journal has committed them: MQTT, Home Assistant, the JSONL log, stdout."""
