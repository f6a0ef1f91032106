"""The layer-by-layer trace shared by both recorders (NLG_*/src/trace_hooks.py) and `python -m alignment trace`."""
