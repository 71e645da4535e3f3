"""GPU plumbing: what travels to a leased accelerator and back, and the script run there."""
