"""Beam search bookkeeping shared by the PyTorch and the Jittor gpt2_beam.py (numpy only).

The framework runs the model and, per step, the top-k over each row's vocabulary; everything else lives here:
which tokens to ban, the best candidates of each context, which finish, which continue, the length-penalised best
hypothesis of every context, batching contexts by length and the prediction file.

Two semantics (`BeamSettings.semantics`):
- "lora", microsoft/LoRA's gpt2_beam.py: the bans (n-grams, EOS before min_length) and the repetition
  penalty act on the logits, over the generated tokens only, *before* the softmax, so the remaining tokens
  are renormalised. Each step keeps the top `beam` candidates; those ending in an EOS token finish and
  leave a dead slot (score -inf) until the next step refills the beam.
- "hf", transformers' generate (beam search, early_stopping="never"): the same bans act on the
  log-probabilities *after* the log-softmax (no renormalisation) and look at context + generated tokens.
  Finished candidates are those ending in EOS among the top `beam`; the beam continues with the best
  `beam` candidates that do not end in EOS.
In both, a finished hypothesis of n generated tokens (its EOS included) scores sum(log p) / n ** length_penalty,
every hypothesis still running after eval_len tokens finishes there, and the best score wins (the earliest on
a tie). A context stops as soon as no running hypothesis can beat its best finished one: scores only fall,
so with a positive length penalty no continuation can score above best_running / eval_len ** length_penalty.
That bound is exact, so stopping there gives what running all eval_len steps gives (microsoft/LoRA runs them
all; transformers with early_stopping="never" uses the same bound). Beam 1 is greedy decoding in both.
"""
from dataclasses import dataclass

import numpy as np

from common_data.util.jsonl import write_jsonl

SEMANTICS = ("lora", "hf")
PAD = -1  # left padding in BeamBatch.contexts: no token id, so no n-gram through it matches real tokens


@dataclass(frozen=True)
class BeamSettings:
    beam: int = 1
    eval_len: int = 64
    min_length: int = 0
    length_penalty: float = 1.0
    no_repeat_ngram_size: int = 4
    repetition_penalty: float = 1.0
    eos_token_ids: tuple = (50256, 628)
    semantics: str = "lora"

    def __post_init__(self):
        object.__setattr__(self, "eos_token_ids", tuple(int(i) for i in self.eos_token_ids))
        if self.semantics not in SEMANTICS:
            raise ValueError(f"BeamSettings: semantics {self.semantics!r} is not one of {SEMANTICS}")
        if self.beam < 1 or self.eval_len < 1 or self.min_length < 0 or self.repetition_penalty <= 0:
            raise ValueError(f"BeamSettings: need beam >= 1, eval_len >= 1, min_length >= 0 and "
                             f"repetition_penalty > 0, got {self}")
        if not self.eos_token_ids:
            raise ValueError("BeamSettings: give at least one EOS token id")

    @property
    def penalties_before_softmax(self):
        """Bans and repetition penalty on the logits (renormalised by the softmax) or on the log-probabilities.

        Greedy search takes the argmax either way; transformers' greedy search penalises the logits too.
        """
        return self.semantics == "lora" or self.beam == 1

    @property
    def history_includes_context(self):
        """Whether n-gram blocking and the repetition penalty see the context (transformers) or not (LoRA)."""
        return self.semantics == "hf"

    @property
    def refills_beam(self):
        return self.semantics == "hf" and self.beam > 1

    def candidate_count(self, rows_per_context, vocab_size):
        """How many of the best continuations per context the framework hands to BeamBatch.advance.

        Refilling the beam needs `beam` candidates that do not end in EOS: each row gives at most one per
        EOS id, so (1 + number of EOS ids) * beam always holds enough.
        """
        count = self.beam * (1 + len(self.eos_token_ids)) if self.refills_beam else self.beam
        return min(count, rows_per_context * vocab_size)


def banned_ngram_tokens(history, size):
    """(rows, tokens): appending token to history[row] would repeat an n-gram (n = size) of that row.

    history is an int array [rows, length]; size 0 bans nothing (as fairseq / microsoft/LoRA / transformers).
    """
    rows, length = history.shape
    if size <= 0 or length < size:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    prefix = history[:, length - size + 1:]
    windows = np.lib.stride_tricks.sliding_window_view(history[:, :length - 1], size - 1, axis=1)
    match = (windows == prefix[:, None, :]).all(axis=2)
    row_index, start = np.nonzero(match)
    return row_index.astype(np.int64), history[row_index, start + size - 1].astype(np.int64)


class BeamBatch:
    """The search state of contexts decoded together, left-padded to the longest.

    Rows are the hypotheses: `rows_per_context` consecutive rows per live context (1 before the first step, then
    `beam`). Contexts leave the batch as soon as they are done. The framework runs the model on the rows in
    `running`, those whose score is finite: a slot left by a finished hypothesis (score -inf in microsoft/LoRA's
    semantics) has no continuation that could be chosen. It feeds `prompts` (padding as token 0) with `padding`, the
    pad count of every prompt: the model gives padded positions no attention and counts positions from each
    prompt's first token, so a context decodes as alone.
    """

    def __init__(self, settings, contexts):
        self.settings = settings
        count = len(contexts)
        width = max(map(len, contexts))
        if min(map(len, contexts)) == 0:
            raise ValueError("BeamBatch: every context needs at least one token")
        self.padding = np.array([width - len(context) for context in contexts], np.int64)
        self.contexts = np.full((count, width), PAD, np.int64)
        for row, context in enumerate(contexts):
            self.contexts[row, self.padding[row]:] = context
        self.prompts = np.maximum(self.contexts, 0)
        self.live = np.arange(count)
        self.rows_per_context = 1
        self.step = 0
        self.tokens = np.zeros((count, 0), np.int64)
        self.scores = np.zeros(count, np.float32)
        self.best_scores = np.full(count, -np.inf)
        self.best_tokens = [[] for _ in range(count)]

    @property
    def done(self):
        return len(self.live) == 0

    @property
    def running(self):
        """The rows the model runs: those with a finite score."""
        return np.flatnonzero(np.isfinite(self.scores))

    def history(self):
        """Tokens the bans and the repetition penalty look at, one row per running hypothesis [running, length]."""
        if not self.settings.history_includes_context:
            return self.tokens[self.running]
        return self._after(self.contexts)

    def _after(self, contexts):
        """The running hypotheses' contexts (rows of `contexts`), followed by their generated tokens."""
        context_rows = self.live[self.running // self.rows_per_context]
        return np.concatenate([contexts[context_rows], self.tokens[self.running]], axis=1)

    def banned_tokens(self):
        """(rows, tokens) whose score the framework sets to -inf before this step's top-k, rows into `running`."""
        settings = self.settings
        rows, tokens = banned_ngram_tokens(self.history(), settings.no_repeat_ngram_size)
        if self.step < settings.min_length:
            all_rows = np.arange(len(self.running))
            eos = np.asarray(settings.eos_token_ids, np.int64)
            rows = np.concatenate([rows, np.repeat(all_rows, len(eos))])
            tokens = np.concatenate([tokens, np.tile(eos, len(all_rows))])
        return rows, tokens

    def penalised_tokens(self):
        """Token ids per running row for the repetition penalty [running, length], or None when it is off."""
        if self.settings.repetition_penalty == 1.0:
            return None
        if not self.settings.history_includes_context:
            return self.tokens[self.running]
        # padding stands in as the context's last token, which is penalised anyway (once per distinct token)
        return self._after(np.where(self.contexts == PAD, self.contexts[:, -1:], self.contexts))

    def candidate_count(self, vocab_size):
        return self.settings.candidate_count(self.rows_per_context, vocab_size)

    def best_candidates(self, row_scores, row_ids, vocab_size):
        """(top scores, top ids) per live context, the input of advance, from the framework's best k processed
        log-probabilities of every running row (row_scores float32 [running, k], best first; row_ids their tokens).

        A candidate scores its row's running score plus its log-probability. The best candidates of a context lie
        among the best k of each of its rows (a row adds one number to all its tokens); rows that did not run have
        none. Among equal scores the earlier row and the better-ranked token come first.
        """
        rows, k, running = len(self.live) * self.rows_per_context, row_scores.shape[1], self.running
        scores = np.full((rows, k), -np.inf, np.float32)
        ids = np.zeros((rows, k), np.int64)
        scores[running] = np.asarray(row_scores, np.float32) + self.scores[running, None]
        ids[running] = np.asarray(row_ids, np.int64) + (running % self.rows_per_context)[:, None] * vocab_size
        scores, ids = scores.reshape(len(self.live), -1), ids.reshape(len(self.live), -1)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :self.candidate_count(vocab_size)]
        return np.take_along_axis(scores, order, axis=1), np.take_along_axis(ids, order, axis=1)

    def advance(self, top_scores, top_ids, vocab_size):
        """Take one step from the framework's best continuations of every live context.

        top_scores: float32 [live, k], best first, the running score plus the processed log-probability;
        top_ids: their index into the context's rows x vocabulary, row-major. Returns, for the rows the next step
        runs, the rows they continue (positions in this step's `running`), in order, and their new tokens; both empty
        once done. The framework reorders its key/value cache with those rows and feeds the tokens.
        """
        settings = self.settings
        beam = settings.beam
        running = self.running
        position = np.zeros(len(self.live) * self.rows_per_context, np.int64)
        position[running] = np.arange(len(running))
        top_scores = np.asarray(top_scores, np.float32)
        source = np.asarray(top_ids, np.int64) // vocab_size
        token = np.asarray(top_ids, np.int64) % vocab_size
        length = self.step + 1
        last = length == settings.eval_len
        ends = np.isin(token, settings.eos_token_ids) | last
        self._finish(top_scores[:, :beam], source[:, :beam], token[:, :beam], ends[:, :beam], length)

        if settings.refills_beam:
            columns = np.argsort(ends, axis=1, kind="stable")[:, :beam]
        else:
            columns = np.broadcast_to(np.arange(beam), (len(self.live), beam))
        scores = np.take_along_axis(top_scores, columns, axis=1)
        scores = np.where(np.take_along_axis(ends, columns, axis=1), np.float32(-np.inf), scores)
        rows = (np.arange(len(self.live))[:, None] * self.rows_per_context
                + np.take_along_axis(source, columns, axis=1))
        tokens = np.take_along_axis(token, columns, axis=1)

        bound_length = settings.eval_len if settings.length_penalty > 0 else length + 1
        bound = scores.max(axis=1).astype(np.float64) / bound_length ** settings.length_penalty
        keep = (self.best_scores[self.live] < bound) & (length < settings.eval_len)
        rows, tokens, scores = rows[keep].reshape(-1), tokens[keep].reshape(-1), scores[keep].reshape(-1)
        self.tokens = np.concatenate([self.tokens[rows], tokens[:, None]], axis=1)
        self.scores = scores
        self.live = self.live[keep]
        self.rows_per_context = beam
        self.step = length
        running = self.running
        return position[rows[running]], tokens[running]

    def _finish(self, scores, source, token, ends, length):
        """Keep, per live context, the best hypothesis that ends at this step if it beats the best so far."""
        normalised = np.where(ends, scores.astype(np.float64) / length ** self.settings.length_penalty, -np.inf)
        best = normalised.argmax(axis=1)
        best_score = normalised[np.arange(len(best)), best]
        for position in np.nonzero(best_score > self.best_scores[self.live])[0]:
            context = self.live[position]
            row = position * self.rows_per_context + source[position, best[position]]
            self.best_tokens[context] = self.tokens[row].tolist() + [int(token[position, best[position]])]
            self.best_scores[context] = best_score[position]


def query_tokens(context, seq_len, eval_len):
    """The prompt microsoft/LoRA decodes from: the last seq_len - eval_len tokens of the context."""
    return list(context[-(seq_len - eval_len):])


def length_batches(queries, batch_size):
    """Batches of at most batch_size indices into queries, longest queries first (the least padding)."""
    order = sorted(range(len(queries)), key=lambda i: (-len(queries[i]), i))
    return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]


def unique_queries(queries):
    """(distinct queries in first-seen order, for every query the index of its distinct one)."""
    first_seen = {}
    owner = [first_seen.setdefault(tuple(query), len(first_seen)) for query in queries]
    return [list(query) for query in first_seen], owner


def prediction_rows(predictions, eval_len):
    """microsoft/LoRA's prediction file rows: {"id", "predict": tokens padded with 0 to eval_len}."""
    return [{"id": index, "predict": list(tokens) + [0] * (eval_len - len(tokens))}
            for index, tokens in sorted(predictions.items())]


def write_predictions(path, predictions, eval_len):
    write_jsonl(path, prediction_rows(predictions, eval_len))
