"""Call recording: dual-track (caller left, agent/callee right) WAV files that survive crashes.

``wav.py`` is the file layer: crash-safe WAV writers (PCM16 or G.711 μ-law, written as ``.part`` and atomically
renamed on close, with an fsync policy), repair of ``.part`` files orphaned by a crash, retention and a WAV reader;
``talkstats.py`` computes talk-time statistics (talk, silence, overlap per track) from recordings; ``plot.py`` draws a
call's timeline plot; ``live.py`` is the recorder on calls, feeding media-tap frames to the writers from a worker
thread and reporting recording problems on the call and in the CDR without ever stopping the call.
"""
