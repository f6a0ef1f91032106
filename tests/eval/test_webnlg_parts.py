"""The GenerationEval pieces that need no Java: BLEU, chrF++, word tokenization."""
import math

import pytest

from nlg_eval.webnlg import chrf_plus_plus, multi_bleu_detok, word_tokenize


def test_bleu_counts_a_blank_reference_as_length_zero_like_multi_bleu_detok():
    # All n-grams match; "a" is closer to the blank reference (0) than to "a b c d" (4): no brevity penalty.
    assert multi_bleu_detok([["a b c d", ""], ["e f g h", "e f g h"]], ["a", "e f g h"]) == pytest.approx(100)
    assert multi_bleu_detok([["a b c d", "a b c d"], ["e f g h", "e f g h"]], ["a", "e f g h"]) == pytest.approx(
        100 * math.exp(1 - 8 / 5))


def test_bleu_is_case_sensitive():
    assert multi_bleu_detok([["The cat sat on the mat ."]], ["the cat sat on the mat ."]) < 100


def test_chrf_ignores_blank_references_and_inputs_without_any():
    hypotheses = ["the cat sat on the mat", "a dog barked", "x"]
    with_blanks = [["the cat is on the mat", " "], ["a dog barks", ""], ["", ""]]
    without = [["the cat is on the mat"], ["a dog barks"]]
    assert chrf_plus_plus(with_blanks, hypotheses) == pytest.approx(chrf_plus_plus(without, hypotheses[:2]))


def test_chrf_averages_the_f_scores_of_the_orders_as_generation_eval():
    # "ab" against "ac" (spaces dropped): character unigrams and word unigrams F = 1/2, the character bigram and the
    # word bigram match nothing, character 3- to 6-grams there are none: GenerationEval's mean of the 8 per-order
    # F-scores is 1/8; the F-score of the precision and recall averaged over the 4 orders present would be 1/4
    assert chrf_plus_plus([["a c"]], ["a b"]) == pytest.approx(0.125, abs=1e-12)


def test_word_tokenize_is_treebank_without_sentence_splitting():
    assert word_tokenize("Abilene, Texas isn't big. It has an airport.") == \
        "Abilene , Texas is n't big. It has an airport ."
