"""Voice: the audio front end, speech detection, the voice model and the stage that runs them per source."""
