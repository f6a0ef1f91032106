"""GPT-2 and its adapters as numpy: configs, the model plan, initialisation, merging, checkpoints, peft's format."""
