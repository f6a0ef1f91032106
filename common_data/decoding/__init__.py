"""Beam search bookkeeping, the weights beam search decodes with, token ids back to text."""
