"""Adapters in Hugging Face peft's folder format (adapter_config.json + adapter_model.safetensors), both ways, with
numpy and safetensors only: model_process.py export-peft / import-peft run in either framework's environment."""
