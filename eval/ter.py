"""Translation edit rate as pyter computes it: the TER of WebNLG's GenerationEval.

pyter's TER is not tercom's (sacrebleu's TER differs on the same data): it shifts greedily. Each
step tries every shift of a maximal phrase hyp[i:i+k] == ref[j:j+k] (i != j) to position j, keeps the
one that lowers the word edit distance to the reference most (ties: the lexicographically greatest
resulting word list), and stops when no shift lowers it; TER = (shifts + edit distance) / len(ref).
pyter itself is unmaintained and slow (pure-Python dynamic programming per candidate), so the same
search runs here on a bit-parallel edit distance (Myers / Hyyrö) that resumes from the prefix the
shifted candidate shares with the current hypothesis.
"""


class EditDistance:
    """Word-level Levenshtein distance to one fixed reference, bit-parallel over its positions."""

    def __init__(self, reference):
        self.length = len(reference)
        self.mask = (1 << self.length) - 1
        self.last_bit = 1 << (self.length - 1)
        self.positions = {}
        for index, word in enumerate(reference):
            self.positions[word] = self.positions.get(word, 0) | (1 << index)

    def start(self):
        """State before any hypothesis word: column D[i][0] = i, encoded as (+1 deltas, -1 deltas, D[m][0])."""
        return self.mask, 0, self.length

    def advance(self, state, words):
        """State after appending `words` to the hypothesis; state[2] is the distance so far."""
        plus, minus, distance = state
        mask, last_bit = self.mask, self.last_bit
        for word in words:
            equal = self.positions.get(word, 0)
            vertical = equal | minus
            horizontal = ((((equal & plus) + plus) ^ plus) | equal) & mask
            horizontal_plus = minus | (~(horizontal | plus) & mask)
            horizontal_minus = plus & horizontal
            if horizontal_plus & last_bit:
                distance += 1
            elif horizontal_minus & last_bit:
                distance -= 1
            # The top row D[0][j] = j rises by one per hypothesis word: shift in a +1.
            horizontal_plus = ((horizontal_plus << 1) | 1) & mask
            horizontal_minus = (horizontal_minus << 1) & mask
            plus = horizontal_minus | (~(vertical | horizontal_plus) & mask)
            minus = horizontal_plus & vertical
        return plus, minus, distance

    def prefix_states(self, words):
        """states[k] is the state after words[:k]."""
        states = [self.start()]
        for word in words:
            states.append(self.advance(states[-1], (word,)))
        return states


def phrase_matches(hypothesis, reference):
    """(i, j, k) for every i != j with hypothesis[i] == reference[j], k the length of the common run."""
    positions = {}
    for index, word in enumerate(reference):
        positions.setdefault(word, []).append(index)
    for start, word in enumerate(hypothesis):
        for target in positions.get(word, ()):
            if start == target:
                continue
            length = 1
            while (start + length < len(hypothesis) and target + length < len(reference)
                   and hypothesis[start + length] == reference[target + length]):
                length += 1
            yield start, target, length


def best_shift(hypothesis, reference, edit_distance):
    """(distance decrease, shifted hypothesis) of the best single shift, or None when none helps."""
    states = edit_distance.prefix_states(hypothesis)
    current = states[-1][2]
    best = None
    for start, target, length in phrase_matches(hypothesis, reference):
        shifted = hypothesis[:start] + hypothesis[start + length:]
        shifted[target:target] = hypothesis[start:start + length]
        shared = min(start, target)
        gain = current - edit_distance.advance(states[shared], shifted[shared:])[2]
        if best is None or (gain, shifted) > best:
            best = (gain, shifted)
    if best is None or best[0] <= 0:
        return None
    return best


def ter(hypothesis_words, reference_words):
    """pyter's TER of one hypothesis against one non-empty reference (lists of words)."""
    if not reference_words:
        raise ValueError("TER needs a non-empty reference")
    edit_distance = EditDistance(reference_words)
    hypothesis = list(hypothesis_words)
    shifts = 0
    while (shift := best_shift(hypothesis, reference_words, edit_distance)) is not None:
        hypothesis = shift[1]
        shifts += 1
    return (shifts + edit_distance.advance(edit_distance.start(), hypothesis)[2]) / len(reference_words)
