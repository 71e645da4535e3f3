"""Where frames and sound come from: source URLs, cameras, files and streams, microphones, the capture threads."""
