"""E2E references tokenized the way microsoft/LoRA's data/e2e/valid.txt has them.

The rules below were derived from, and are tested against, that file: the official devset.csv,
tokenized with them, gives every completion of valid.txt exactly ("family-friendly." ->
"family - friendly ."). LoRA's test.txt was made by another tokenizer ("is n't" where
valid.txt has "isn 't"), so the test split differs from it in a few percent of the rows.
"""
import re

LETTER = r"[^\W\d_]"
ALNUM = r"[^\W_]"

# A period ends a token (is split off) before a space, the end, or other punctuation; a run of
# periods ("..") is always one token. A period after a bare number followed by a lowercase word
# ("1 out of 5. in the city") is kept: there it does not end a sentence.
PERIOD = re.compile(r"\.{2,}|\.(?=\s|$|[^\w\s])")
NUMBER_BEFORE_LOWERCASE = re.compile(r"\s+[a-z]")
SYMBOL = re.compile(r"([^\w\s.,'’-])")
INNER_HYPHEN = re.compile(rf"(?<={ALNUM})-(?={ALNUM})")
COMMA = re.compile(r"(?<!\d),|,(?!\d)")
# An apostrophe between letters starts a clitic ("isn 't", "it 's"); any other one is a quote.
APOSTROPHE = re.compile(rf"(?<={LETTER})(['’])(?={LETTER})|(['’])")


def _split_period(match):
    text, start = match.string, match.start()
    token = text[text.rfind(" ", 0, start) + 1:start]
    if token.isdigit() and NUMBER_BEFORE_LOWERCASE.match(text, match.end()):
        return match.group(0)
    return f" {match.group(0)} "


def _split_apostrophe(match):
    clitic, quote = match.groups()
    return f" {clitic}" if clitic else f" {quote} "


def tokenize_reference(text):
    """Space-separated tokens of an E2E reference, as in LoRA's valid.txt (without its trailing space)."""
    text = PERIOD.sub(_split_period, text)
    text = SYMBOL.sub(r" \1 ", text)
    text = INNER_HYPHEN.sub(" - ", text)
    text = COMMA.sub(" , ", text)
    text = APOSTROPHE.sub(_split_apostrophe, text)
    return " ".join(text.split())
