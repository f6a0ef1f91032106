"""Framework-neutral parts of training that both trainers share number for number (dropout masks)."""
