"""Converters on the official files (checked against microsoft/LoRA's versions) and on broken copies."""
import json
import shutil

import pytest

from common_data.data.e2e_text import tokenize_reference
from common_data.util.errors import DataFormatError
from common_data.data.formats import (read_dart_json, read_e2e_csv, read_e2e_txt, read_formatted, read_webnlg_json,
                                 read_webnlg_xml)
from common_data.util.jsonl import read_jsonl, write_jsonl


def test_e2e_csv_reproduces_lora_valid_txt(shared):
    from_csv = read_e2e_csv(shared / "datasets/e2e/official_devset.csv")
    from_lora = read_e2e_txt(shared / "datasets/e2e/valid.txt")
    assert len(from_csv) == 4672
    assert from_csv == from_lora


def test_e2e_csv_test_split_matches_lora_contexts(shared):
    from_csv = read_e2e_csv(shared / "datasets/e2e/official_testset_w_refs.csv")
    from_lora = read_e2e_txt(shared / "datasets/e2e/test.txt")
    assert [row["context"] for row in from_csv] == [row["context"] for row in from_lora]
    # LoRA's test.txt was tokenized by another tool ("is n't" where valid.txt has "isn 't").
    differing = sum(a["completion"] != b["completion"] for a, b in zip(from_csv, from_lora))
    assert differing < 0.05 * len(from_csv)


@pytest.mark.parametrize("text, tokens", [
    ("Alimentum isn't family-friendly.", "Alimentum isn 't family - friendly ."),
    ("called 'Aromi' has", "called ' Aromi ' has"),
    ("in the £20-25 price range.", "in the £ 20 - 25 price range ."),
    ("rating of 1 out of 5. in the city", "rating of 1 out of 5. in the city"),
    ("less than £20. its rating", "less than £ 20 . its rating"),
    ("low ratings...but it is", "low ratings ... but it is"),
    ("city center.,", "city center . ,"),
    ("£30.99, high", "£ 30.99 , high"),
    ("Browns Cambridge- a", "Browns Cambridge- a"),
])
def test_e2e_tokenizer_cases_from_valid_txt(text, tokens):
    assert tokenize_reference(text) == tokens


def test_e2e_types_and_groups(shared):
    rows = read_e2e_csv(shared / "datasets/e2e/official_devset.csv")
    assert {row["type"] for row in rows} == {"coffee shop", "none"}
    first = rows[0]
    assert first["context"] == "name : Alimentum | area : city centre | family friendly : no"
    assert first["type"] == "none" and first["group"] == first["context"]
    assert len({row["group"] for row in rows}) == 547


def test_webnlg_xml_agrees_with_lora_json(shared):
    from_xml = read_webnlg_xml(shared / "datasets/webnlg/xml_v1.4/dev")
    from_json = read_webnlg_json(shared / "datasets/webnlg/dev.json")
    # Two v1.4 entries have only empty <text/> lexicalisations; every other triple set is in both.
    assert len({row["group"] for row in from_json} - {row["group"] for row in from_xml}) == 2
    assert {(row["group"], row["type"]) for row in from_xml} <= {(row["group"], row["type"]) for row in from_json}
    # The texts differ where the corpus was edited between versions (v1.4 has stray "@" marks).
    json_pairs = {(row["context"], row["completion"]) for row in from_json}
    same = sum((row["context"], row["completion"]) in json_pairs for row in from_xml)
    assert same > 0.97 * len(from_xml)


def test_webnlg_contexts_match_earlier_formatted_sample(shared):
    contexts = {row["context"] for row in read_webnlg_xml(shared / "datasets/webnlg/xml_v1.4/train")}
    sample = read_jsonl(shared / "datasets/webnlg/train_sampled18_formatted.jsonl")
    assert all(row["context"] in contexts for row in sample)
    assert sample[0]["context"] == 'Aarhus_Airport : cityServed : "Aarhus, Denmark"'


def test_webnlg_test_split_has_unseen_categories(shared):
    rows = read_webnlg_xml(shared / "datasets/webnlg/xml_v1.4/test")
    assert len({row["type"] for row in rows}) == 15
    assert {"Artist", "Politician", "CelestialBody"} <= {row["type"] for row in rows}


def test_dart_json(shared):
    rows = read_dart_json(shared / "datasets/dart/dart-v1.1.1-full-dev.json")
    assert rows[0] == {
        "context": "Mars Hill College : joined : 1973 | Mars Hill College : location : Mars Hill, North Carolina",
        "completion": "A school from Mars Hill, North Carolina, joined in 1973.",
        "type": "joined",
        "group": "Mars Hill College : joined : 1973 | Mars Hill College : location : Mars Hill, North Carolina",
    }
    entries = json.loads((shared / "datasets/dart/dart-v1.1.1-full-dev.json").read_text(encoding="utf-8"))
    assert len(rows) == sum(len(entry["annotations"]) for entry in entries)


def test_formatted_rows_get_type_and_group_from_context(shared):
    rows = read_formatted(shared / "datasets/dart/test_formatted.jsonl", "dart")
    assert len(rows) == 12552
    assert rows[0]["type"] == "notes" and rows[0]["group"] == rows[0]["context"]
    e2e = read_formatted(shared / "datasets/e2e/train_sampled18_formatted.jsonl", "e2e")
    assert e2e[0]["type"] == "none" and e2e[1]["type"] == "restaurant"
    with pytest.raises(DataFormatError, match="webnlg context does not name"):
        read_formatted(shared / "datasets/webnlg/train_sampled18_formatted.jsonl", "webnlg")


# Broken copies: the error names the file and the line or entry.

def _corrupt_line(source, target, number, replace):
    lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[number - 1] = replace(lines[number - 1])
    target.write_text("".join(lines), encoding="utf-8")
    return target


def test_e2e_csv_row_without_ref(shared, tmp_path):
    path = _corrupt_line(shared / "datasets/e2e/official_devset.csv", tmp_path / "devset.csv", 12,
                         lambda line: line.split('",', 1)[0] + '",\n')
    with pytest.raises(DataFormatError, match=r"devset\.csv: line 12: row without ref"):
        read_e2e_csv(path)


def test_e2e_csv_row_without_mr(shared, tmp_path):
    path = _corrupt_line(shared / "datasets/e2e/official_devset.csv", tmp_path / "devset.csv", 30,
                         lambda line: '"",' + line.split('",', 1)[1])
    with pytest.raises(DataFormatError, match=r"devset\.csv: line 30: row without MR"):
        read_e2e_csv(path)


def test_e2e_csv_bad_slot(shared, tmp_path):
    path = _corrupt_line(shared / "datasets/e2e/official_devset.csv", tmp_path / "devset.csv", 5,
                         lambda line: line.replace("area[", "area(", 1))
    with pytest.raises(DataFormatError, match=r"devset\.csv: line 5: unreadable MR slot"):
        read_e2e_csv(path)


def test_e2e_txt_line_without_separator(shared, tmp_path):
    path = _corrupt_line(shared / "datasets/e2e/valid.txt", tmp_path / "valid.txt", 77,
                         lambda line: line.replace("||", " "))
    with pytest.raises(DataFormatError, match=r"valid\.txt: line 77"):
        read_e2e_txt(path)


def test_malformed_json_line(shared, tmp_path):
    path = _corrupt_line(shared / "datasets/dart/test_formatted.jsonl", tmp_path / "test_formatted.jsonl", 57,
                         lambda line: line[:40] + "\n")
    with pytest.raises(DataFormatError, match=r"test_formatted\.jsonl: line 57: malformed JSON"):
        read_formatted(path, "dart")


def _webnlg_copy(shared, tmp_path, name="3triples/Food.xml"):
    split = tmp_path / "dev"
    (split / name).parent.mkdir(parents=True)
    shutil.copy(shared / "datasets/webnlg/xml_v1.4/dev" / name, split / name)
    return split, split / name


def test_webnlg_lex_without_text(shared, tmp_path):
    split, path = _webnlg_copy(shared, tmp_path)
    text = path.read_text(encoding="utf-8")
    start = text.index("<text>")
    path.write_text(text[:start] + text[text.index("</text>") + len("</text>"):], encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"Food\.xml: entry eid='Id1' category='Food' lex lid='Id1'"):
        read_webnlg_xml(split)


def test_webnlg_malformed_xml(shared, tmp_path):
    split, path = _webnlg_copy(shared, tmp_path)
    _corrupt_line(path, path, 40, lambda line: line.replace("</", "<", 1))
    with pytest.raises(DataFormatError, match=r"Food\.xml: line \d+: malformed XML"):
        read_webnlg_xml(split)


def test_empty_splits(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataFormatError, match="empty split"):
        read_webnlg_xml(tmp_path / "empty")
    (tmp_path / "header_only.csv").write_text("mr,ref\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"header_only\.csv.*empty split"):
        read_e2e_csv(tmp_path / "header_only.csv")
    (tmp_path / "empty.jsonl").write_text("", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"empty\.jsonl: line 1: no rows"):
        read_formatted(tmp_path / "empty.jsonl", "e2e")


def test_dart_entry_without_annotations(shared, tmp_path):
    entries = json.loads((shared / "datasets/dart/dart-v1.1.1-full-dev.json").read_text(encoding="utf-8"))
    entries[9]["annotations"] = []
    path = tmp_path / "dart-dev.json"
    path.write_text(json.dumps(entries), encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"dart-dev\.json: entry 10: entry without"):
        read_dart_json(path)


def test_failed_write_leaves_no_file(tmp_path):
    def rows():
        yield {"context": "a", "completion": "b"}
        raise DataFormatError("source.jsonl", "line 2", "broken")

    target = tmp_path / "out" / "train_formatted.jsonl"
    with pytest.raises(DataFormatError):
        write_jsonl(target, rows())
    assert list((tmp_path / "out").iterdir()) == []
