"""Where events go once the journal has committed them: the JSONL log and stdout, MQTT (with Home Assistant)."""
