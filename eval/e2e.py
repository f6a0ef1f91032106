"""The E2E NLG Challenge metrics as tuetschek/e2e-metrics (measure_scores.py) computes them.

BLEU and NIST: `mteval` (its mteval-v13a-sig.pl); METEOR, ROUGE_L, CIDEr: `coco` (pycocoevalcap).
METEOR's Java process is started first: it loads its paraphrase table while Python computes the rest.
"""
from . import coco, mteval
from .java import require_java

E2E_METRICS = ("BLEU", "NIST", "METEOR", "ROUGE_L", "CIDEr")


def score_e2e(references, predictions):
    """{metric: score} for one prediction per input; references is one list of references per input."""
    require_java()
    meteor_scorer = coco.start_meteor()
    tokenized_references, tokenized_predictions = coco.ptb_tokenize(references, predictions)
    scores = {
        "BLEU": mteval.bleu(references, predictions),
        "NIST": mteval.nist(references, predictions),
        "ROUGE_L": coco.rouge_l(tokenized_references, tokenized_predictions),
        "CIDEr": coco.cider(tokenized_references, tokenized_predictions),
        "METEOR": coco.meteor(meteor_scorer, tokenized_references, tokenized_predictions),
    }
    return {metric: float(scores[metric]) for metric in E2E_METRICS}
