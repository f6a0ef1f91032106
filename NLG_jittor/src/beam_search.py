"""Batched beam search with a key/value cache (Jittor side; the bookkeeping is common_data.decoding.beam).

The contexts of a batch are left-padded to the longest (the model masks the padding): one forward pass over
the prompts, then one token per hypothesis and step.
"""
import jittor as jt
from tqdm import tqdm

from common_data.decoding.beam import BeamBatch, length_batches
from NLG_jittor.src.model import log_sum_exp

# top_k splits rows into blocks of this many scores
BLOCK = 64


def penalised_scores(logits, batch):
    """The processed next-token log-probabilities [rows, vocab] of BeamBatch `batch` (float32).

    Before the softmax (microsoft/LoRA, greedy) the bans and the repetition penalty change the logits
    and the softmax renormalises; after it (transformers' beam search) they change the log-probabilities.
    """
    logits = logits.float32()
    if batch.settings.penalties_before_softmax:
        return log_softmax(apply_penalties(logits, batch))
    return apply_penalties(log_softmax(logits), batch)


def log_softmax(logits):
    """log_softmax over the last axis with the normaliser summed in float64 (Jittor sums in the input's
    precision one element after another)."""
    return logits - log_sum_exp(logits).unsqueeze(-1)


def apply_penalties(scores, batch):
    """CTRL's repetition penalty (divide positive, multiply negative scores) on the history, then the bans."""
    penalty = batch.settings.repetition_penalty
    seen = batch.penalised_tokens()
    if seen is not None and seen.shape[1]:
        seen = jt.array(seen)
        picked = scores.gather(1, seen)
        scores = scores.scatter(1, seen, jt.ternary(picked < 0, picked * penalty, picked / penalty))
    rows, tokens = batch.banned_tokens()
    if len(rows):
        scores[jt.array(rows), jt.array(tokens)] = float("-inf")
    return scores


def top_k(scores, k):
    """(values, indices) of the k largest scores of every row [rows, width], best first, as torch's topk.

    Jittor's topk sorts whole rows, which over a vocabulary costs more than the model. The k largest lie in
    the k blocks with the largest maxima (a block outside them has k larger scores before its best), so
    only the block maxima and then those k blocks get sorted.
    """
    rows, width = scores.shape
    blocks = -(-width // BLOCK)
    if blocks <= k:
        return scores.topk(k, dim=1)
    padding = blocks * BLOCK - width
    padded = jt.concat([scores, jt.full((rows, padding), float("-inf"))], dim=1) if padding else scores
    _, best_blocks = padded.view(rows, blocks, BLOCK).max(dim=2).topk(k, dim=1)
    ids = (best_blocks.unsqueeze(2) * BLOCK + jt.arange(BLOCK).int32()).view(rows, k * BLOCK)
    values, order = padded.gather(1, ids).topk(k, dim=1)
    return values, ids.gather(1, order)


def best_continuations(scores, batch):
    """(top scores, top ids) per live context over its rows x vocabulary, as numpy arrays.

    A score is the running score plus the processed log-probability. The best k of a context lie among the
    best k of each of its rows (a row adds one number to all its tokens), so the top-k runs on
    [rows, vocab] first and then on the few survivors.
    """
    vocab_size = scores.shape[1]
    count = batch.candidate_count(vocab_size)
    row_scores, row_ids = top_k(scores, min(count, vocab_size))
    running = jt.array(batch.scores)
    totals = (row_scores + running.unsqueeze(1)).view(len(batch.live), -1)
    beam_index = jt.arange(scores.shape[0]).int32() % batch.rows_per_context
    flat_ids = row_ids + beam_index.unsqueeze(1) * vocab_size
    top_scores, picked = totals.topk(count, dim=1)
    top_ids = flat_ids.view(len(batch.live), -1).gather(1, picked)
    return top_scores.numpy(), top_ids.numpy()


def prefill(model, prompts, padding):
    """The key/value cache of all prompt tokens but the last (None for one-token prompts).

    A loss mask of zeros makes the model skip the LM head: those positions' logits are never needed.
    """
    head = prompts[:, :-1]
    if head.shape[1] == 0:
        return None
    mask = jt.zeros(head.shape, dtype="float32")
    _, _, past = model(head, targets=jt.zeros_like(head), loss_mask=mask, use_cache=True, padding=padding)
    return past


@jt.no_grad()
def search_batch(model, contexts, settings):
    """Beam search (greedy for beam 1) from n contexts (token lists); the n best token lists."""
    batch = BeamBatch(settings, contexts)
    prompts = jt.array(batch.prompts)
    padding = jt.array(batch.padding)
    past = prefill(model, prompts, padding)
    tokens = prompts[:, -1:]
    while True:
        logits, _, past = model(tokens, past_key_values=past, use_cache=True, padding=padding)
        scores = penalised_scores(logits[:, -1], batch)
        rows, new_tokens = batch.advance(*best_continuations(scores, batch), scores.shape[-1])
        if batch.done:
            return batch.best_tokens
        rows = jt.array(rows)
        past = [(key[rows], value[rows]) for key, value in past]
        padding = padding[rows]
        tokens = jt.array(new_tokens).unsqueeze(1)


def generate(model, queries, settings, batch_size, progress=True):
    """The best hypothesis (token ids, EOS included) of every query, in order."""
    model.eval()
    results = [None] * len(queries)
    with tqdm(total=len(queries), desc="beam", unit="ctx", disable=not progress, dynamic_ncols=True) as bar:
        for indices in length_batches(queries, batch_size):
            found = search_batch(model, [queries[i] for i in indices], settings)
            for index, tokens in zip(indices, found):
                results[index] = tokens
            bar.update(len(indices))
    return results
