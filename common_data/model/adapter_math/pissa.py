"""PiSSA (Meng et al. 2024) as peft's init_lora_weights="pissa", in Conv1D layout (Wc = W^T, [d_in, d_out]).

The adapter starts from the r principal singular triplets of W = U S V^T (one SVD, float64, so that both
frameworks start from the same numbers): A = sqrt(S_r / s) V_r^T, B = U_r sqrt(S_r / s), and the base weight is
replaced by the residual W - s B A; the layer then trains as LoRA.

A saved PiSSA adapter applies to the original base: it is what peft's conversion to plain LoRA stores
(path_initial_model_for_weight_conversion), rank 2r, A' = [A; A0] and B' = [B, -B0] with A0, B0 the start,
so that W + s B' A' = (W - s B0 A0) + s B A. Loading takes back the first r rows of A' and columns of B'.
"""
import numpy as np


def principal_start(weight, rank, scale):
    """(A [r, d_in], B [d_out, r], residual Conv1D weight [d_in, d_out]) of one Conv1D weight slice."""
    w = weight.astype(np.float64).T
    u, s, vt = np.linalg.svd(w, full_matrices=False)
    root = np.sqrt(s[:rank] / scale)
    lora_a = root[:, None] * vt[:rank]
    lora_b = u[:, :rank] * root[None, :]
    residual = w - scale * lora_b @ lora_a
    return lora_a.astype(np.float32), lora_b.astype(np.float32), residual.T.astype(np.float32)


def to_lora(trained, initial):
    """The saved form of PiSSA adapters {name: array}: rank 2r plain LoRA on the original base (see above)."""
    saved = {}
    for name, array in trained.items():
        if ".lora_A." in name:
            saved[name] = np.concatenate([array, initial[name]], axis=0)
        else:
            saved[name] = np.concatenate([array, -initial[name]], axis=1)
    return saved


def from_lora(saved, rank):
    """The trained rank-r A and B back from their saved form; arrays of rank r already pass unchanged."""
    trained = {}
    for name, array in saved.items():
        if ".lora_A." in name and array.shape[0] == 2 * rank:
            array = array[:rank]
        elif ".lora_B." in name and array.shape[1] == 2 * rank:
            array = array[:, :rank]
        trained[name] = array
    return trained
