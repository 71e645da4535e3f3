"""Vision: what runs on the pixels (motion mask, detection schedule, YuNet, the expression model, the per-frame analysis)."""
