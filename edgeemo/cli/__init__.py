"""The command line: `edgeemo run | detect | check | events | user`."""
