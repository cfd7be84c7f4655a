"""Speech recognition: engine interface, PocketSphinx, Vosk, keyword matching (see the IVR issue)."""
