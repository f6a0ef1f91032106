"""Read the official data files (and microsoft/LoRA's versions of them) into formatted rows.

A formatted row is `{"context", "completion", "type", "group"}`:
- context: the input as microsoft/LoRA's converters write it: E2E `name : X | Type : pub | ...`,
  WebNLG and DART `subject : property : object | ...`;
- completion: one reference text;
- type: the stratum for sampling: E2E eatType (or "none"), WebNLG category, DART the lowercased
  predicate of the first triple;
- group: the rows that share one input (multi-reference evaluation): the context string.
"""
import csv
import json
import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from common_data.data.e2e_text import tokenize_reference
from common_data.util.errors import DataFormatError
from common_data.util.jsonl import read_jsonl

E2E_FIELDS = {
    "name": "name",
    "eatType": "Type",
    "food": "food",
    "priceRange": "price",
    "customer rating": "customer rating",
    "area": "area",
    "familyFriendly": "family friendly",
    "near": "near",
}
E2E_MR_SLOT = re.compile(r"([^\[\],]+)\[([^\]]*)\](?:,\s*|$)")
E2E_NO_TYPE = "none"


def make_row(context, completion, row_type):
    return {"context": context, "completion": completion, "type": row_type, "group": context}


def e2e_context(mr, path, where):
    """`name[X], eatType[pub]` -> `name : X | Type : pub`, field names and tokenized values as in
    LoRA's E2E files (`priceRange[£20-25]` -> `price : £ 20 - 25`)."""
    slots = []
    position = 0
    while position < len(mr):
        match = E2E_MR_SLOT.match(mr, position)
        if match is None or match.group(1).strip() not in E2E_FIELDS:
            raise DataFormatError(path, where, f"unreadable MR slot at {mr[position:position + 30]!r}")
        slots.append(f"{E2E_FIELDS[match.group(1).strip()]} : {tokenize_reference(match.group(2))}")
        position = match.end()
    return " | ".join(slots)


def e2e_type(context):
    """The eatType of an E2E context (`Type : pub` -> "pub"), or "none"."""
    for field in context.split(" | "):
        key, _, value = field.partition(" : ")
        if key == "Type":
            return value
    return E2E_NO_TYPE


def dart_type(context):
    """The predicate of the first triple of a DART context (`s : p : o | ...`), lowercased."""
    return context.split(" | ")[0].split(" : ")[1].lower()


def read_e2e_csv(path):
    """Official E2E CSV (`mr,ref`, one row per reference); references tokenized as in LoRA's files."""
    rows = []
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"mr", "ref"} <= set(reader.fieldnames):
            raise DataFormatError(path, "line 1", "expected a header with columns mr,ref")
        try:
            for record in reader:
                where = f"line {reader.line_num}"
                mr, ref = (record.get("mr") or "").strip(), (record.get("ref") or "").strip()
                if not mr or not ref:
                    raise DataFormatError(path, where, "row without " + ("MR" if not mr else "ref"))
                context = e2e_context(mr, path, where)
                rows.append(make_row(context, tokenize_reference(ref), e2e_type(context)))
        except csv.Error as error:
            raise DataFormatError(path, f"line {reader.line_num}", f"malformed CSV ({error})") from None
    return _non_empty(rows, path)


def read_e2e_txt(path):
    """microsoft/LoRA's E2E text files: `context||completion` per line."""
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            parts = line.strip().split("||")
            if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
                raise DataFormatError(path, f"line {number}", "expected `context||completion`")
            context = parts[0]
            rows.append(make_row(context, parts[1].strip(), e2e_type(context)))
    return _non_empty(rows, path)


def _triples_context(triples):
    return " | ".join(f"{subject} : {predicate} : {obj}" for subject, predicate, obj in triples)


def _webnlg_xml_file_rows(path):
    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError as error:
        raise DataFormatError(path, f"line {error.position[0]}", f"malformed XML ({error})") from None
    rows = []
    for entry in root.iter("entry"):
        where = f"entry eid={entry.get('eid')!r} category={entry.get('category')!r}"
        category = entry.get("category")
        mtriples = entry.findall("modifiedtripleset/mtriple")
        lexes = entry.findall("lex")
        if not category or not mtriples or not lexes:
            raise DataFormatError(path, where, "entry without category, modified triples or lex")
        triples = [(mtriple.text or "").split(" | ") for mtriple in mtriples]
        if any(len(triple) != 3 for triple in triples):
            raise DataFormatError(path, where, "mtriple is not `subject | property | object`")
        context = _triples_context(triples)
        for lex in lexes:
            text = lex.find("text")
            if text is None:
                raise DataFormatError(path, f"{where} lex lid={lex.get('lid')!r}", "lex without text")
            # LoRA keeps the lexicalisations marked good; the official v1.4 dev set has a few
            # with an empty <text/>, which carry nothing to learn or score.
            if lex.get("comment") == "good" and (text.text or "").strip():
                rows.append(make_row(context, text.text.strip(), category))
    return rows


def read_webnlg_xml(folder):
    """One split of the official WebNLG 2017 XML (v1.4): `folder/{1..7}triples/<Category>.xml`."""
    files = sorted(Path(folder).glob("*triples/*.xml"), key=lambda f: (int(f.parent.name[0]), f.name))
    if not files:
        raise DataFormatError(folder, "folder", "no *triples/*.xml files (empty split)")
    rows = [row for path in files for row in _webnlg_xml_file_rows(path)]
    return _non_empty(rows, folder)


def _load_json(path):
    with open(path, encoding="utf-8") as handle:
        try:
            return json.load(handle)
        except json.JSONDecodeError as error:
            raise DataFormatError(path, f"line {error.lineno}", f"malformed JSON ({error.msg})") from None


def read_webnlg_json(path):
    """microsoft/LoRA's WebNLG JSON (`{"entries": [{"1": {...}}, ...]}`), lexicalisations marked good."""
    rows = []
    data = _load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
        raise DataFormatError(path, "line 1", 'expected {"entries": [...]}')
    for index, wrapper in enumerate(data["entries"]):
        where = f"entry {index + 1}"
        try:
            (entry,) = wrapper.values()
            triples = [(t["subject"], t["property"], t["object"]) for t in entry["modifiedtripleset"]]
            lexicalisations = entry["lexicalisations"]
            category = entry["category"]
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            raise DataFormatError(path, where, f"missing or malformed field ({error!r})") from None
        if not triples or not lexicalisations:
            raise DataFormatError(path, where, "entry without triples or lexicalisations")
        context = _triples_context(triples)
        for lex in lexicalisations:
            if lex.get("comment") == "good" and lex.get("lex", "").strip():
                rows.append(make_row(context, lex["lex"], category))
    return _non_empty(rows, path)


def read_dart_json(path):
    """Official DART JSON: a list of `{"tripleset": [[s, p, o], ...], "annotations": [{"text"}, ...]}`."""
    rows = []
    entries = _load_json(path)
    if not isinstance(entries, list):
        raise DataFormatError(path, "line 1", "expected a JSON list of entries")
    for index, entry in enumerate(entries):
        where = f"entry {index + 1}"
        try:
            triples = [(s, p.lower(), o) for s, p, o in entry["tripleset"]]
            texts = [annotation["text"] for annotation in entry["annotations"]]
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise DataFormatError(path, where, f"missing or malformed field ({error!r})") from None
        if not triples or not texts or not all(text.strip() for text in texts):
            raise DataFormatError(path, where, "entry without triples or annotation text")
        context = _triples_context(triples)
        rows.extend(make_row(context, text, triples[0][1]) for text in texts)
    return _non_empty(rows, path)


TYPE_FROM_CONTEXT = {"e2e": e2e_type, "dart": dart_type}


def read_formatted(path, dataset):
    """Formatted JSONL (`{"context", "completion"}`); type and group derived from the context if absent."""
    rows = []
    for number, row in enumerate(read_jsonl(path, required_keys=("context", "completion")), start=1):
        if "type" in row and "group" in row:
            rows.append({key: row[key] for key in ("context", "completion", "type", "group")})
            continue
        where = f"line {number}"
        if dataset not in TYPE_FROM_CONTEXT:
            raise DataFormatError(path, where, f"no type field, and a {dataset} context does not name one")
        try:
            row_type = TYPE_FROM_CONTEXT[dataset](row["context"])
        except IndexError:
            raise DataFormatError(path, where, "context is not `subject : property : object | ...`") from None
        rows.append(make_row(row["context"], row["completion"], row_type))
    return rows


def _non_empty(rows, path):
    if not rows:
        raise DataFormatError(path, "file", "no rows (empty split)")
    return rows
