"""Speech recognition for the IVR: a streaming engine interface (``engine.py``), the embedded
PocketSphinx backend (``pocketsphinx_engine.py``), keyword matching on text (``keywords.py``) and an
accuracy harness (``eval.py``). A Vosk backend is planned (issue 4)."""
