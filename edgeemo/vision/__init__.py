"""Vision: what runs on the pixels (motion mask, detection schedule, the shared per-frame analysis)."""
