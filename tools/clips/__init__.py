"""Generated test clips (data/ is git-ignored): the busy 2x2 tiling and faces entering a still scene."""
