"""Training the face and voice models (and the teachers' soft targets the face model distils from)."""
