"""METEOR, ROUGE_L and CIDEr as e2e-metrics gets them from the COCO caption evaluation (pycocoevalcap).

Predictions and references are first tokenized by Stanford's PTBTokenizer (lowercased, punctuation
tokens removed); then METEOR 1.5 runs in one Java process in stdio mode (`-l en -norm`), ROUGE_L is the
LCS F-measure with beta 1.2 against the best reference, and CIDEr is pycocoevalcap's `Cider`
(CIDEr-D: sigma 6, clipped counts, x10) with document frequencies taken from the references.
All of it is pycocoevalcap's code; this module only feeds it.
"""
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

from .errors import EvalError


def ptb_tokenize(references, predictions):
    """(references, predictions) as {input index: [tokenized strings]}, in one Java call."""
    captions = {("ref", index): [{"caption": text} for text in group] for index, group in enumerate(references)}
    captions.update({("pred", index): [{"caption": text}] for index, text in enumerate(predictions)})
    tokenized = PTBTokenizer().tokenize(captions)
    return ({index: tokenized[("ref", index)] for index in range(len(references))},
            {index: tokenized[("pred", index)] for index in range(len(predictions))})


def start_meteor():
    """pycocoevalcap's Meteor: its Java process starts now and loads its paraphrase table meanwhile."""
    return Meteor()


def meteor(scorer, tokenized_references, tokenized_predictions):
    """Corpus METEOR from a `start_meteor()` scorer."""
    try:
        return scorer.compute_score(tokenized_references, tokenized_predictions)[0]
    except ValueError:
        raise EvalError("METEOR (java -jar meteor-1.5.jar) stopped without a score; "
                        "is Java working (it needs about 2 GB of memory)?") from None


def rouge_l(tokenized_references, tokenized_predictions):
    return Rouge().compute_score(tokenized_references, tokenized_predictions)[0]


def cider(tokenized_references, tokenized_predictions):
    return Cider().compute_score(tokenized_references, tokenized_predictions)[0]
