"""Plain data every part shares: frames and faces, the event payload, model cards, inference, shipped files."""
