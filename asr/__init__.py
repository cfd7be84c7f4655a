"""Speech recognition for the IVR: a streaming engine interface with VAD endpointing and a tentative early
endpoint (``engine.py``), the embedded PocketSphinx backend with out-of-grammar rejection
(``pocketsphinx_engine.py``), an optional Vosk backend (``vosk_engine.py``), ``factory.make_engine``,
keyword matching on text (``keywords.py``) and an accuracy harness (``eval.py``). See docs/asr.md."""
