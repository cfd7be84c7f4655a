"""Flow-tree IVR: flow model, validator, interpreter, simulator (see the IVR issue)."""
