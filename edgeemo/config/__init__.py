"""The configuration: the typed schema of edgeemo.yaml, its loading, and the secrets kept out of it."""
