"""The pipeline: capture -> detect -> classify -> track -> the journal, as supervised threads joined by inboxes."""
