"""The WebNLG (and DART) metrics as WebNLG's GenerationEval (eval.py) computes them.

- BLEU: multi-bleu-detok.perl on the raw texts = sacrebleu's BLEU with 13a tokenization, case-sensitive,
  no smoothing; a blank reference counts as a reference of length 0 for the brevity penalty, as there.
- METEOR: meteor-1.5 over files, `-l en -norm -r N`, on word-tokenized texts.
- chrF++: on the raw texts, blank references left out, as GenerationEval's chrF++.py: the mean of the F-scores of
  the 6 character and 2 word n-gram orders = sacrebleu's CHRF(word_order=2, eps_smoothing=True) (without
  eps_smoothing sacrebleu takes the F-score of the precision and recall averaged over the orders: ~2e-5 more
  on WebNLG).
- TER: on word-tokenized texts, per input the lowest pyter TER over its references (1 for a blank
  one), averaged over inputs (`ter`, written here: see there why). Files read as GenerationEval reads
  them end with an empty input when they end with a newline; its TER of 1 counts, as there.
Word tokenization is NLTK's Treebank tokenizer (what nltk.word_tokenize applies per sentence) without
punkt's sentence splitting, whose model cannot be downloaded here: METEOR can differ from the official
one in the 4th decimal. One more known difference: multi-bleu-detok's `chop` also drops the last
character of a file that does not end with a newline.
"""
from concurrent.futures import ThreadPoolExecutor

from nltk.tokenize import NLTKWordTokenizer
from sacrebleu.metrics import BLEU, CHRF

from .errors import EvalError
from .java import meteor_on_files, require_java
from .ter import ter

WEBNLG_METRICS = ("BLEU", "METEOR", "chrF++", "TER")
_WORD_TOKENIZER = NLTKWordTokenizer()


def word_tokenize(text):
    return " ".join(_WORD_TOKENIZER.tokenize(text))


def multi_bleu_detok(references, hypotheses):
    """Corpus BLEU in percent, as multi-bleu-detok.perl prints it."""
    streams = [list(stream) for stream in zip(*references)]
    return BLEU(tokenize="13a", smooth_method="none", force=True).corpus_score(hypotheses, streams).score


def chrf_plus_plus(references, hypotheses):
    """Corpus chrF++ in [0, 1] over the inputs that have at least one non-blank reference."""
    kept = [(group, hypothesis) for group, hypothesis in zip(references, hypotheses)
            if any(ref.strip() for ref in group)]
    streams = [[ref if ref.strip() else None for ref in stream] for stream in zip(*(group for group, _ in kept))]
    return CHRF(word_order=2, eps_smoothing=True).corpus_score([hypothesis for _, hypothesis in kept], streams).score / 100


def average_ter(tokenized_references, tokenized_hypotheses):
    total = 0.0
    for group, hypothesis in zip(tokenized_references, tokenized_hypotheses):
        total += min(ter(hypothesis.split(), ref.split()) if ref.split() else 1.0 for ref in group)
    return total / len(tokenized_hypotheses)


def score_webnlg(references, hypotheses):
    """{metric: score}; references[j] holds the N references of hypothesis j ('' where it has fewer)."""
    num_refs = len(references[0])
    if any(len(group) != num_refs for group in references):
        raise EvalError("every hypothesis needs the same number of reference slots ('' for a missing one)")
    require_java()
    tokenized_hypotheses = [word_tokenize(text) for text in hypotheses]
    tokenized_references = [[word_tokenize(text) for text in group] for group in references]
    with ThreadPoolExecutor(max_workers=1) as pool:
        meteor = pool.submit(meteor_on_files, tokenized_hypotheses,
                             [ref for group in tokenized_references for ref in group], num_refs)
        scores = {
            "BLEU": multi_bleu_detok(references, hypotheses),
            "chrF++": chrf_plus_plus(references, hypotheses),
            "TER": average_ter(tokenized_references, tokenized_hypotheses),
        }
        scores["METEOR"] = meteor.result()
    return {metric: float(scores[metric]) for metric in WEBNLG_METRICS}
