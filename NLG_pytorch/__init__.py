"""GPT-2 fine-tuning with LoRA and its relatives in PyTorch (src/); the mirror of NLG_jittor.

Importing the package sets up the CPU process for torch's training step and beam search, before numpy or torch
loads: both read these settings when they load.
"""
import os

# On the CPU a training step's LM head product runs in numpy's OpenBLAS (src/ops.py), the rest in torch's OpenMP
# threads, which must not keep the cores busy while the other works. OpenBLAS's idle threads spin for about 2^28
# cycles after each product by default; 2^4 lets them sleep at once. torch's OpenMP runtime (libgomp, MKL's and
# oneDNN's too) spins for 300,000 rounds after each parallel region when OMP_WAIT_POLICY is unset, milliseconds on a
# small CPU; 10,000 still bridges the gaps between torch's own ops.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
os.environ.setdefault("GOMP_SPINCOUNT", "10000")
