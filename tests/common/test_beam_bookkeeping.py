"""The framework-neutral parts of beam search: n-gram bans, candidate handling of both semantics, batching,
the prediction file and the command line."""
import numpy as np
import pytest

from common_data.decoding.beam import (PAD, BeamBatch, BeamSettings, banned_ngram_tokens, length_batches, prediction_rows,
                              query_tokens, unique_queries)
from common_data.cli.beam_args import build_parser, eos_token_ids, parse_args

VOCAB = 100


def banned_by_dictionary(tokens, size):
    """fairseq's way: map every (size - 1)-gram to the tokens that followed it, look up the last one."""
    following = {}
    for start in range(len(tokens) - size + 1):
        following.setdefault(tuple(tokens[start:start + size - 1]), set()).add(tokens[start + size - 1])
    return following.get(tuple(tokens[len(tokens) - size + 1:]), set()) if len(tokens) >= size - 1 else set()


@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_ngram_bans_match_the_dictionary_method(size):
    rng = np.random.default_rng(size)
    for length in range(0, 14):
        history = rng.integers(0, 3, size=(6, length))
        rows, tokens = banned_ngram_tokens(history, size)
        for row in range(6):
            assert set(tokens[rows == row].tolist()) == banned_by_dictionary(history[row].tolist(), size)


def test_no_ngram_blocking_with_size_zero():
    rows, tokens = banned_ngram_tokens(np.ones((2, 9), np.int64), 0)
    assert len(rows) == len(tokens) == 0


def step(batch, candidates):
    """advance() on hand-made candidates: per context a list of (score, row within the context, token)."""
    scores = np.array([[score for score, _, _ in context] for context in candidates], np.float32)
    ids = np.array([[row * VOCAB + token for _, row, token in context] for context in candidates])
    return batch.advance(scores, ids, VOCAB)


EOS = 7


def test_lora_keeps_a_dead_slot_where_a_hypothesis_finished_and_hf_refills_it():
    candidates = [[(-1.0, 0, 5), (-1.5, 0, EOS), (-2.0, 0, 6), (-3.0, 0, 8)]]
    lora = BeamBatch(BeamSettings(beam=2, eval_len=10, eos_token_ids=(EOS,), semantics="lora"), [[1, 2]])
    hf = BeamBatch(BeamSettings(beam=2, eval_len=10, eos_token_ids=(EOS,), semantics="hf"), [[1, 2]])
    assert lora.candidate_count(VOCAB) == 2 and hf.candidate_count(VOCAB) == 4

    rows, tokens = step(lora, [candidates[0][:2]])
    # the dead slot does not run
    assert tokens.tolist() == [5] and lora.scores.tolist() == [-1.0, -np.inf] and lora.running.tolist() == [0]
    rows, tokens = step(hf, candidates)
    assert tokens.tolist() == [5, 6] and hf.scores.tolist() == [-1.0, -2.0]
    for batch in (lora, hf):
        assert batch.best_tokens == [[EOS]] and batch.best_scores.tolist() == [-1.5]


def test_best_candidates_add_the_running_scores_and_leave_out_the_rows_that_did_not_run():
    batch = BeamBatch(BeamSettings(beam=2, eval_len=10, eos_token_ids=(EOS,)), [[1, 2], [3]])
    step(batch, [[(-1.0, 0, 5), (-1.5, 0, EOS)], [(-0.5, 0, 4), (-0.7, 0, 6)]])
    assert batch.running.tolist() == [0, 2, 3]  # row 1 finished
    row_scores = np.array([[-0.1, -0.2], [-0.3, -0.4], [-0.05, -0.6]], np.float32)
    scores, ids = batch.best_candidates(row_scores, np.array([[8, 9], [10, 11], [12, 13]]), VOCAB)
    # context 1: row 3 (its second) with -0.7 - 0.05 beats row 2 with -0.5 - 0.3
    np.testing.assert_allclose(scores, [[-1.1, -1.2], [-0.75, -0.8]], rtol=1e-6)
    assert ids.tolist() == [[8, 9], [VOCAB + 12, 10]]


def test_finished_hypotheses_are_scored_with_the_length_penalty():
    settings = BeamSettings(beam=2, eval_len=10, length_penalty=2.0, eos_token_ids=(EOS,))
    batch = BeamBatch(settings, [[1, 2]])
    step(batch, [[(-0.9, 0, EOS), (-1.0, 0, 3)]])
    step(batch, [[(-2.0, 1, EOS), (-2.5, 1, 4)]])
    # -2.0 / 2 ** 2 = -0.5 beats -0.9 / 1 ** 2
    assert batch.best_tokens == [[3, EOS]] and batch.best_scores.tolist() == [-0.5]


def test_a_context_stops_once_no_running_hypothesis_can_win():
    settings = BeamSettings(beam=2, eval_len=4, length_penalty=1.0, eos_token_ids=(EOS,))
    batch = BeamBatch(settings, [[1], [2]])
    step(batch, [[(-0.1, 0, EOS), (-0.2, 0, 3)], [(-0.1, 0, 3), (-0.2, 0, 4)]])
    # context 0: the best running score -0.2 can at best become -0.2 / 4 = -0.05 > -0.1: it goes on
    assert batch.live.tolist() == [0, 1]
    rows, tokens = step(batch, [[(-0.5, 1, 3), (-0.6, 1, 4)], [(-0.3, 0, 5), (-0.4, 1, 5)]])
    # context 0: -0.5 / 4 = -0.125 cannot beat -0.1; context 1 has rows 2 and 3 of this step, the second and third
    # that ran (row 0 had finished)
    assert batch.live.tolist() == [1] and rows.tolist() == [1, 2] and tokens.tolist() == [5, 5]
    assert batch.tokens.tolist() == [[3, 5], [4, 5]]
    step(batch, [[(-0.7, 0, 6), (-0.8, 1, 6)]])
    step(batch, [[(-0.9, 0, 1), (-1.0, 1, 1)]])
    assert batch.done and batch.best_tokens == [[EOS], [3, 5, 6, 1]]


def test_min_length_bans_the_eos_tokens():
    batch = BeamBatch(BeamSettings(beam=1, min_length=1, eos_token_ids=(EOS, 9), no_repeat_ngram_size=0), [[1], [2]])
    rows, tokens = batch.banned_tokens()
    assert sorted(zip(rows.tolist(), tokens.tolist())) == [(0, EOS), (0, 9), (1, EOS), (1, 9)]


def test_hf_semantics_block_ngrams_of_the_context_too():
    context = [[4, 5, 6, 4, 5]]
    lora = BeamBatch(BeamSettings(no_repeat_ngram_size=3, semantics="lora"), context)
    hf = BeamBatch(BeamSettings(no_repeat_ngram_size=3, semantics="hf"), context)
    assert len(lora.banned_tokens()[0]) == 0
    assert hf.banned_tokens()[1].tolist() == [6]


def test_length_batches_take_the_longest_first():
    queries = [[1] * n for n in (3, 5, 3, 3, 5, 2, 3)]
    assert length_batches(queries, 2) == [[1, 4], [0, 2], [3, 6], [5]]


def test_contexts_of_different_lengths_are_left_padded():
    batch = BeamBatch(BeamSettings(beam=2), [[4, 5, 6], [7]])
    assert batch.padding.tolist() == [0, 2]
    assert batch.contexts.tolist() == [[4, 5, 6], [PAD, PAD, 7]] and batch.prompts.tolist() == [[4, 5, 6], [0, 0, 7]]


@pytest.mark.parametrize("context", [[3], [4, 0, 4], [4, 5, 6, 4, 5]])
def test_padding_changes_no_ban_and_no_penalised_token(context):
    settings = BeamSettings(beam=2, eval_len=10, no_repeat_ngram_size=3, repetition_penalty=1.2, semantics="hf",
                            eos_token_ids=(EOS,))
    alone, padded = BeamBatch(settings, [context]), BeamBatch(settings, [[1] * 7, context])
    # token 0 is what the framework feeds for padding: no n-gram may run through it
    for first, second in ((0, 9), (0, 4), (4, 5), (0, 0)):
        for batch in (alone, padded):
            step(batch, [[(-1.0, 0, first), (-2.0, 0, second)]] * len(batch.live))
        rows, tokens = padded.banned_tokens()
        assert sorted(zip(rows[rows >= 2] - 2, tokens[rows >= 2])) == sorted(zip(*alone.banned_tokens()))
        assert ([set(row) for row in padded.penalised_tokens()[2:].tolist()]
                == [set(row) for row in alone.penalised_tokens().tolist()])


def test_duplicate_contexts_are_decoded_once():
    queries, owner = unique_queries([[1, 2], [3], [1, 2], [3], [4]])
    assert queries == [[1, 2], [3], [4]] and owner == [0, 1, 0, 1, 2]


def test_prompts_keep_their_last_tokens():
    assert query_tokens(list(range(10)), seq_len=8, eval_len=4) == [6, 7, 8, 9]


def test_prediction_rows_follow_microsoft_lora():
    assert prediction_rows({2: [5, 628], 0: [1, 2, 3]}, 4) == [{"id": 0, "predict": [1, 2, 3, 0]},
                                                               {"id": 2, "predict": [5, 628, 0, 0]}]


def test_eos_ids_always_hold_end_of_text():
    assert eos_token_ids(None) == (50256, 628)
    assert eos_token_ids([628]) == (50256, 628)
    assert eos_token_ids([13, 50256, 628]) == (50256, 13, 628)


def test_microsoft_lora_command_line_parses():
    args = parse_args("--data ./data/e2e/test.jsonl --batch_size 1 --seq_len 512 --eval_len 64 --model_card gpt2.md "
                      "--init_checkpoint ./model.26289.safetensors --platform local --lora_dim 4 --lora_alpha 32 "
                      "--beam 10 --length_penalty 0.8 --no_repeat_ngram_size 4 --repetition_penalty 1.0 "
                      "--eos_token_id 628 --work_dir ./trained_models/GPT2_M/e2e "
                      "--output_file predict.26289.b10p08r4.jsonl".split())
    assert (args.beam, args.eval_len, args.length_penalty, args.eos_token_id) == (10, 64, 0.8, [628])


def test_impossible_lengths_are_rejected():
    with pytest.raises(SystemExit):
        parse_args(["--data", "x.jsonl", "--seq_len", "64", "--eval_len", "64"])
    assert "--beam_semantics" in build_parser().format_help()
