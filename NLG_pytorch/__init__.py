"""GPT-2 fine-tuning with LoRA and its relatives in PyTorch (src/); the mirror of NLG_jittor.

Importing the package sets up the CPU process for torch's training step, before numpy or torch loads.
"""
import os

# On the CPU the LM head's product runs in numpy's OpenBLAS (src/ops.py) and the rest in torch's OpenMP threads.
# OpenBLAS's idle threads spin for about 2^28 cycles after each product by default, taking the cores from
# torch; 2^4 lets them sleep at once. OpenBLAS reads this when it loads, so it is set before numpy is imported.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
