"""Training curves as TensorBoard event files, written with the standard library only (no TensorFlow, no torch),
so that both trainers write the same files with the same tags."""
