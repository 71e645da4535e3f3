"""Where frames and sound come from: live streams read over one connection."""
