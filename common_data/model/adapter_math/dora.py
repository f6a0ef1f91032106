"""DoRA (Liu et al. 2024) as peft's use_dora=True, in Conv1D layout (weight Wc = W^T, [d_in, d_out]).

An adapted slice computes m * (W + s B A) x / ||W + s B A||, the norm per output feature (a column of Wc)
and detached from the graph; m (the magnitude, one value per output feature) trains and starts at ||W||,
so that the start is the base layer.
"""
import numpy as np


def column_norms(weight):
    """||.|| of each output feature of a Conv1D weight [d_in, d_out], in float64."""
    return np.linalg.norm(weight.astype(np.float64), axis=0)


def initial_magnitude(weight):
    return column_norms(weight).astype(np.float32)


def merged_weight(weight, lora_a, lora_b, magnitude, scale):
    """Wc' = m (Wc + s A^T B^T) / ||Wc + s A^T B^T|| per column, computed in float64."""
    direction = weight.astype(np.float64) + scale * (lora_a.T.astype(np.float64) @ lora_b.T.astype(np.float64))
    return (direction * (magnitude.astype(np.float64) / column_norms(direction))).astype(np.float32)
