"""Framework-neutral code shared by NLG_pytorch and NLG_jittor (Python + numpy only)."""
