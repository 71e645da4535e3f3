"""What every part builds on: frames and faces, the event payload, box geometry, model cards and inference, shipped files, metrics, and the supervised worker thread."""
