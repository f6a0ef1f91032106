"""GPT-2 fine-tuning with LoRA and its relatives in PyTorch (src/); the mirror of NLG_jittor.

Importing the package sets up the CPU process for torch's training step, before numpy or torch loads.
"""
import ctypes
import os

# On the CPU the LM head's product runs in numpy's OpenBLAS (src/ops.py) and the rest in torch's OpenMP threads.
# OpenBLAS's idle threads spin for about 2^28 cycles after each product by default, taking the cores from
# torch; 2^4 lets them sleep at once. OpenBLAS reads this when it loads, so it is set before numpy is imported.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

# glibc serves every allocation above 32 MB (the embedding's gradients, the LM head's logits) with a fresh mmap
# and unmaps it when freed, so each training step pays page faults on new pages again; served from the heap and
# never trimmed, freed memory stays in the process for the next step.
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
_libc = ctypes.CDLL(None)
if hasattr(_libc, "mallopt"):
    _libc.mallopt(M_MMAP_MAX, 0)
    _libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1)
