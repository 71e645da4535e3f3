"""Helpers the tests and the tools share: a real mosquitto broker, an ffmpeg stream server, a dashboard client,
a PulseAudio server, and waiting on a condition."""
