"""nlg_eval: the official E2E, WebNLG and DART metrics, reproduced exactly (the folder eval/).

E2E, as tuetschek/e2e-metrics' measure_scores.py: `score_e2e` -> BLEU, NIST, METEOR, ROUGE_L, CIDEr.
WebNLG / DART, as WebNLG's GenerationEval eval.py: `score_webnlg` -> BLEU, METEOR, chrF++, TER.

From maintained libraries: PTB tokenization, METEOR (stdio), ROUGE_L and CIDEr (pycocoevalcap, with its
meteor-1.5.jar and stanford-corenlp-3.4.1.jar); BLEU, chrF++ and the mteval 13a tokenizer (sacrebleu);
Treebank word tokenization (nltk's NLTKWordTokenizer).
Written here, because no maintained library computes them: mteval's NIST with the e2e-metrics edits
(`mteval`), pyter's greedy-shift TER (`ter`), METEOR over files as GenerationEval runs it (`java`), and
reading the official file layouts (`inputs`). `nlg-eval` (`cli`) is the command line.
"""
from .e2e import E2E_METRICS, score_e2e
from .errors import EvalError
from .webnlg import WEBNLG_METRICS, score_webnlg

__all__ = ["E2E_METRICS", "WEBNLG_METRICS", "EvalError", "score_e2e", "score_webnlg"]
