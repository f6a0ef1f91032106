"""BLEU and NIST as e2e-metrics computes them: its edited mteval-v13a-sig.pl with the default options.

That script lowercases ASCII letters only (`tr/[A-Z]/[a-z]/`), tokenizes with mteval's 13a rules
(sacrebleu's Tokenizer13a is the same code), and lets an input have any number of references:
missing references are skipped for the BLEU brevity length and, for NIST, the reference length is the
total reference word count divided by the average number of references per input.

BLEU comes from sacrebleu (13a, `exp` smoothing = mteval's); it differs from mteval only in degenerate
corpora (no matching unigram at all, or no prediction as long as 4 tokens), where both are about 0.
NIST is written here: no maintained library computes mteval's NIST.
"""
import math
import string
from collections import Counter

from sacrebleu.metrics import BLEU
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

NIST_ORDER = 5
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
# NIST length penalty: a system/reference length ratio of 1.5 scores 0.5 (mteval's beta).
_NIST_BETA = -math.log(0.5) / math.log(1.5) / math.log(1.5)


def ascii_lower(text):
    return text.translate(_ASCII_LOWER)


def bleu(references, predictions):
    """Corpus BLEU in [0, 1]; references is one list of reference strings per prediction."""
    streams = [[group[index] if index < len(group) else None for group in references]
               for index in range(max(len(group) for group in references))]
    lowered = [[None if ref is None else ascii_lower(ref) for ref in stream] for stream in streams]
    metric = BLEU(tokenize="13a", smooth_method="exp", force=True)
    return metric.corpus_score([ascii_lower(p) for p in predictions], lowered).score / 100


def ngram_counts(words, max_order):
    return Counter(tuple(words[start:start + order])
                   for order in range(1, max_order + 1) for start in range(len(words) - order + 1))


def nist_information(reference_counts, total_words):
    """info(w1..wn) = log2(count(w1..wn-1) / count(w1..wn)) over all references.

    For unigrams the prefix count is the total word count; so it is when the prefix is the single
    word "0", which Perl takes for false in mteval's `$mgram ? ... : ...`.
    """
    def information(ngram):
        prefix = ngram[:-1]
        prefix_count = reference_counts[prefix] if prefix and prefix != ("0",) else total_words
        return -math.log(reference_counts[ngram] / prefix_count) / math.log(2)
    return information


def nist_length_penalty(ratio):
    if ratio >= 1:
        return 1.0
    if ratio <= 0:
        return 0.0
    return math.exp(-_NIST_BETA * math.log(ratio) * math.log(ratio))


def nist(references, predictions):
    """Corpus NIST (5-grams); references is one list of reference strings per prediction."""
    tokenize = Tokenizer13a()
    reference_words = [[tokenize(ascii_lower(ref)).split() for ref in group] for group in references]
    prediction_words = [tokenize(ascii_lower(prediction)).split() for prediction in predictions]

    reference_counts = Counter()
    for group in reference_words:
        for words in group:
            reference_counts.update(ngram_counts(words, NIST_ORDER))
    total_reference_words = sum(len(words) for group in reference_words for words in group)
    information = nist_information(reference_counts, total_reference_words)

    matched_information = [0.0] * (NIST_ORDER + 1)
    prediction_ngrams = [0] * (NIST_ORDER + 1)
    for group, words in zip(reference_words, prediction_words):
        clip = Counter()
        for reference in group:
            clip |= ngram_counts(reference, NIST_ORDER)
        for ngram, count in ngram_counts(words, NIST_ORDER).items():
            if ngram in clip:
                matched_information[len(ngram)] += information(ngram) * min(count, clip[ngram])
        for order in range(1, NIST_ORDER + 1):
            prediction_ngrams[order] += max(len(words) - order + 1, 0)

    references_per_input = sum(1 for group in reference_words for words in group if words) / len(predictions)
    average_reference_words = total_reference_words / references_per_input
    score = sum(matched_information[order] / max(prediction_ngrams[order], 1) for order in range(1, NIST_ORDER + 1))
    return score * nist_length_penalty(prediction_ngrams[1] / average_reference_words)
