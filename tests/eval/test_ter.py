"""pyter's greedy-shift TER, checked against a plain re-statement of its definition."""
import itertools
import random

import pytest

from nlg_eval.ter import EditDistance, ter


def plain_edit_distance(hypothesis, reference):
    previous = list(range(len(reference) + 1))
    for row, word in enumerate(hypothesis, start=1):
        current = [row]
        for column, target in enumerate(reference, start=1):
            current.append(min(previous[column] + 1, current[-1] + 1, previous[column - 1] + (word != target)))
        previous = current
    return previous[-1]


def plain_ter(hypothesis, reference):
    """Try every maximal-phrase shift with a fresh edit distance each time; keep the best until none helps."""
    shifts = 0
    while True:
        current = plain_edit_distance(hypothesis, reference)
        candidates = []
        for start, target in itertools.product(range(len(hypothesis)), range(len(reference))):
            if start == target or hypothesis[start] != reference[target]:
                continue
            length = 1
            while (start + length < len(hypothesis) and target + length < len(reference)
                   and hypothesis[start + length] == reference[target + length]):
                length += 1
            shifted = hypothesis[:start] + hypothesis[start + length:]
            shifted[target:target] = hypothesis[start:start + length]
            candidates.append((current - plain_edit_distance(shifted, reference), shifted))
        if not candidates or max(candidates)[0] <= 0:
            return (shifts + current) / len(reference)
        hypothesis = max(candidates)[1]
        shifts += 1


def random_sentences(seed, count):
    rng = random.Random(seed)
    vocabulary = "a b c d e the".split()
    for _ in range(count):
        yield ([rng.choice(vocabulary) for _ in range(rng.randint(0, 10))],
               [rng.choice(vocabulary) for _ in range(rng.randint(1, 10))])


def test_bit_parallel_edit_distance_matches_dynamic_programming():
    for hypothesis, reference in random_sentences(seed=1, count=500):
        distance = EditDistance(reference)
        assert distance.advance(distance.start(), hypothesis)[2] == plain_edit_distance(hypothesis, reference)


def test_ter_matches_the_plain_greedy_search():
    for hypothesis, reference in random_sentences(seed=2, count=400):
        assert ter(hypothesis, reference) == pytest.approx(plain_ter(hypothesis, reference))


def test_ter_of_pyters_documented_example():
    reference = "SAUDI ARABIA denied THIS WEEK information published in the AMERICAN new york times".split()
    hypothesis = "THIS WEEK THE SAUDIS denied information published in the new york times".split()
    assert f"{ter(hypothesis, reference):.3f}" == "0.308"


def test_ter_of_an_empty_hypothesis_is_one_and_an_empty_reference_is_refused():
    assert ter([], ["a", "b"]) == 1.0
    with pytest.raises(ValueError):
        ter(["a"], [])
