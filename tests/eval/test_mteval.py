"""BLEU and NIST as e2e-metrics' edited mteval-v13a computes them, on inputs small enough to work by hand."""
import math

import pytest

from nlg_eval import mteval


def test_ascii_lowercasing_leaves_other_letters_alone():
    assert mteval.ascii_lower("CAFÉ Über THE") == "cafÉ Über the"


def test_bleu_skips_missing_references_for_the_brevity_length():
    # Input 0 has one reference, input 1 two. Every predicted n-gram matches, so BLEU is the brevity
    # penalty: reference length 4 + 4 against 1 + 4 predicted words. Were the missing second reference
    # of input 0 read as an empty one, "a" would be closest to it (length 0) and BLEU would be 1.
    references = [["a b c d"], ["e f g h", "e f g h"]]
    predictions = ["a", "e f g h"]
    assert mteval.bleu(references, predictions) == pytest.approx(math.exp(1 - 8 / 5))


def test_bleu_is_case_insensitive_and_tokenizes_punctuation():
    assert mteval.bleu([["The cat, sat on the mat."]], ["the cat , sat on THE mat ."]) == pytest.approx(1.0)


def test_nist_of_a_verbatim_single_reference_is_log2_of_its_length():
    # Each unigram carries log2(3 / 1) bits; longer n-grams add nothing (count = prefix count).
    assert mteval.nist([["the cat sat"]], ["the cat sat"]) == pytest.approx(math.log2(3))


def test_nist_reference_length_uses_the_average_number_of_references():
    references = [["a b c d", "a b c d"], ["e f g h"]]
    predictions = ["a b", "e f"]
    # 12 reference words; a, b occur twice (info log2 6), e, f once (info log2 12); bigrams carry 0.
    information = (2 * math.log2(12 / 2) + 2 * math.log2(12 / 1)) / 4
    # 3 references over 2 inputs: the reference length is 12 / 1.5 = 8 against 4 predicted words.
    beta = -math.log(0.5) / math.log(1.5) ** 2
    penalty = math.exp(-beta * math.log(4 / 8) ** 2)
    assert mteval.nist(references, predictions) == pytest.approx(information * penalty)


def test_nist_information_of_ngrams_after_the_word_0_uses_the_total_word_count():
    # mteval's Perl reads the one-word prefix "0" as false and divides by the total word count.
    counts = {("0",): 2, ("0", "pounds"): 1, ("free",): 2, ("free", "pounds"): 1}
    information = mteval.nist_information(counts, total_words=10)
    assert information(("0", "pounds")) == pytest.approx(math.log2(10 / 1))
    assert information(("free", "pounds")) == pytest.approx(math.log2(2 / 1))
