"""Tracking: faces followed over frames, voice and face fused, and the rules that turn both into events."""
