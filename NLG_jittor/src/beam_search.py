"""Batched beam search with a key/value cache; the bookkeeping is common_data.decoding.beam.

The contexts of a batch are left-padded to the longest (the model masks the padding): one forward pass over
the prompts, then one token per running hypothesis and step.
"""
from tqdm import tqdm

from common_data.decoding.beam import BeamBatch, length_batches
from NLG_jittor.src import ops


def best_row_scores(logits, batch):
    """(scores, token ids) [rows, k]: the k best processed next-token log-probabilities of every row (those of
    batch.running), best first, k = batch.candidate_count (float32).

    Before the softmax (microsoft/LoRA, greedy) the bans and the repetition penalty change the logits
    and the softmax renormalises; after it (transformers' beam search) they change the log-probabilities.
    """
    logits = ops.float32(logits)
    count = min(batch.candidate_count(logits.shape[1]), logits.shape[1])
    if batch.settings.penalties_before_softmax:
        return ops.top_log_softmax(apply_penalties(logits, batch), count)
    return ops.top_k(apply_penalties(ops.log_softmax(logits), batch), count)


def apply_penalties(scores, batch):
    """CTRL's repetition penalty (divide positive, multiply negative scores) on the history, then the bans."""
    penalty = batch.settings.repetition_penalty
    seen = batch.penalised_tokens()
    if seen is not None and seen.shape[1]:
        seen = ops.from_numpy_like(seen, scores)
        picked = scores.gather(1, seen)
        scores = scores.scatter(1, seen, ops.where(picked < 0, picked * penalty, picked / penalty))
    rows, tokens = batch.banned_tokens()
    if len(rows):
        scores[ops.from_numpy_like(rows, scores), ops.from_numpy_like(tokens, scores)] = float("-inf")
    return scores


def prefill(model, prompts, padding):
    """The key/value cache of all prompt tokens but the last (None for one-token prompts).

    A loss mask of zeros makes the model skip the LM head: those positions' logits are never needed.
    """
    head = prompts[:, :-1]
    if head.shape[1] == 0:
        return None
    mask = ops.float32_zeros(head.shape, head)
    _, _, past = model(head, targets=ops.zeros_like(head), loss_mask=mask, use_cache=True, padding=padding)
    return past


@ops.no_grad()
def search_batch(model, contexts, settings, device):
    """Beam search (greedy for beam 1) from n contexts (token lists); the n best token lists."""
    batch = BeamBatch(settings, contexts)
    prompts = ops.from_numpy(batch.prompts, device)
    padding = ops.from_numpy_like(batch.padding, prompts)
    past = prefill(model, prompts, padding)
    tokens, rows = prompts[:, -1:], None
    while True:
        logits, _, past = model(tokens, past_key_values=past, past_rows=rows, use_cache=True, padding=padding)
        vocab_size = logits.shape[-1]
        row_scores, row_ids = best_row_scores(logits[:, -1], batch)
        candidates = batch.best_candidates(ops.numpy(row_scores), ops.numpy(row_ids), vocab_size)
        rows, new_tokens = batch.advance(*candidates, vocab_size)
        if batch.done:
            return batch.best_tokens
        rows = ops.from_numpy_like(rows, prompts)
        padding = ops.take_rows(padding, rows)
        tokens = ops.from_numpy_like(new_tokens, prompts).unsqueeze(1)


def generate(model, queries, settings, batch_size, device, progress=True):
    """The best hypothesis (token ids, EOS included) of every query, in order."""
    model.eval()
    results = [None] * len(queries)
    with tqdm(total=len(queries), desc="beam", unit="ctx", disable=not progress, dynamic_ncols=True) as bar:
        for indices in length_batches(queries, batch_size):
            found = search_batch(model, [queries[i] for i in indices], settings, device)
            for index, tokens in zip(indices, found):
                results[index] = tokens
            bar.update(len(indices))
    return results
