"""Batched beam search with a key/value cache (PyTorch side; the bookkeeping is common_data.decoding.beam).

The contexts of a batch are left-padded to the longest (the model masks the padding): one forward pass over
the prompts, then one token per hypothesis and step.
"""
import torch
from tqdm import tqdm

from common_data.decoding.beam import BeamBatch, length_batches


def penalised_scores(logits, batch):
    """The processed next-token log-probabilities [rows, vocab] of BeamBatch `batch` (float32).

    Before the softmax (microsoft/LoRA, greedy) the bans and the repetition penalty change the logits
    and the softmax renormalises; after it (transformers' beam search) they change the log-probabilities.
    """
    logits = logits.float()
    if batch.settings.penalties_before_softmax:
        return torch.log_softmax(apply_penalties_(logits, batch), dim=-1)
    return apply_penalties_(torch.log_softmax(logits, dim=-1), batch)


def apply_penalties_(scores, batch):
    """In place: CTRL's repetition penalty (divide positive, multiply negative scores) on the history, then the bans."""
    penalty = batch.settings.repetition_penalty
    seen = batch.penalised_tokens()
    if seen is not None and seen.shape[1]:
        seen = torch.from_numpy(seen).to(scores.device)
        picked = scores.gather(1, seen)
        scores.scatter_(1, seen, torch.where(picked < 0, picked * penalty, picked / penalty))
    rows, tokens = batch.banned_tokens()
    if len(rows):
        index = (torch.from_numpy(rows).to(scores.device), torch.from_numpy(tokens).to(scores.device))
        scores.index_put_(index, torch.tensor(float("-inf"), device=scores.device))
    return scores


def best_continuations(scores, batch):
    """(top scores, top ids) per live context over its rows x vocabulary, as numpy arrays.

    A score is the running score plus the processed log-probability. The best k of a context lie among the
    best k of each of its rows (a row adds one number to all its tokens), so the top-k runs on
    [rows, vocab] first and then on the few survivors.
    """
    vocab_size = scores.shape[1]
    count = batch.candidate_count(vocab_size)
    row_scores, row_ids = scores.topk(min(count, vocab_size), dim=1)
    running = torch.from_numpy(batch.scores).to(scores.device)
    totals = (row_scores + running[:, None]).view(len(batch.live), -1)
    beam_index = torch.arange(scores.shape[0], device=scores.device) % batch.rows_per_context
    flat_ids = row_ids + beam_index[:, None] * vocab_size
    top_scores, picked = totals.topk(count, dim=1)
    top_ids = flat_ids.view(len(batch.live), -1).gather(1, picked)
    return top_scores.cpu().numpy(), top_ids.cpu().numpy()


def prefill(model, prompts, padding):
    """The key/value cache of all prompt tokens but the last (None for one-token prompts).

    A loss mask of zeros makes the model skip the LM head: those positions' logits are never needed.
    """
    head = prompts[:, :-1]
    if head.shape[1] == 0:
        return None
    mask = torch.zeros(head.shape, dtype=torch.float32, device=head.device)
    _, _, past = model(head, targets=torch.zeros_like(head), loss_mask=mask, use_cache=True, padding=padding)
    return past


@torch.no_grad()
def search_batch(model, contexts, settings, device):
    """Beam search (greedy for beam 1) from n contexts (token lists); the n best token lists."""
    batch = BeamBatch(settings, contexts)
    prompts = torch.from_numpy(batch.prompts).to(device)
    padding = torch.from_numpy(batch.padding).to(device)
    past = prefill(model, prompts, padding)
    tokens = prompts[:, -1:]
    while True:
        logits, _, past = model(tokens, past_key_values=past, use_cache=True, padding=padding)
        scores = penalised_scores(logits[:, -1], batch)
        rows, new_tokens = batch.advance(*best_continuations(scores, batch), scores.shape[-1])
        if batch.done:
            return batch.best_tokens
        rows = torch.from_numpy(rows).to(device)
        past = [(key.index_select(0, rows), value.index_select(0, rows)) for key, value in past]
        padding = padding.index_select(0, rows)
        tokens = torch.from_numpy(new_tokens).to(device)[:, None]


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
