"""The MQTT sink: the connection, TLS and login, Home Assistant discovery, and the journal sender."""
