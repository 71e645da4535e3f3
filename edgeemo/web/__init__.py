"""The local web dashboard: accounts, sessions, the JSON API, live feed over SSE and the pages."""
