"""gpt2_decode.py: microsoft/LoRA's decode step, byte for byte on the earlier port's files."""
import json
import subprocess
import sys

import pytest

from common_data.cli.decode import main
from common_data.decoding.decode import post_process, tokenize_words
from common_data.data.encoding import encode_rows, load_tokenizer
from common_data.util.jsonl import write_jsonl
from common_data.util.paths import REPO_ROOT

SCRIPTS = [REPO_ROOT / "NLG_pytorch/src/gpt2_decode.py", REPO_ROOT / "NLG_jittor/src/gpt2_decode.py"]


def test_both_frameworks_ship_the_same_script():
    assert SCRIPTS[0].read_bytes() == SCRIPTS[1].read_bytes()


def test_e2e_predictions_of_the_earlier_port_decode_to_its_files(shared, tmp_path):
    fixture = shared / "fixtures/seed_run"
    subprocess.run([sys.executable, str(SCRIPTS[1]), "--vocab", str(shared / "vocab"),
                    "--sample_file", str(fixture / "torch_e2e_predict.jsonl"),
                    "--input_file", str(fixture / "e2e_test_sampled_formatted.jsonl"),
                    "--output_ref_file", str(tmp_path / "ref.txt"), "--output_pred_file", str(tmp_path / "pred.txt")],
                   check=True, capture_output=True)
    assert (tmp_path / "ref.txt").read_bytes() == (fixture / "e2e_ref.txt").read_bytes()
    assert (tmp_path / "pred.txt").read_bytes() == (fixture / "torch_e2e_pred.txt").read_bytes()


@pytest.fixture
def small_run(shared, tmp_path):
    """Three contexts with 2, 1 and 3 references; predictions for rows 1, 2, 5 (two of them ending in EOS)."""
    rows = [
        {"context": "a : x", "completion": "First A .\n\nleft out"},
        {"context": "a : x", "completion": "Second A<|endoftext|>left out"},
        {"context": "b : y", "completion": " Only B , fine . "},
        {"context": "c : z", "completion": "C one"},
        {"context": "c : z", "completion": "C two"},
        {"context": "c : z", "completion": "C three"},
    ]
    tokenizer = load_tokenizer(shared / "vocab")
    texts = {1: " The X's pub.\n\nextra", 2: "Y-Bar, £20<|endoftext|>", 5: "Zed Café"}
    ids = {row: tokenizer.encode(text).ids for row, text in texts.items()}
    write_jsonl(tmp_path / "input.jsonl", rows)
    write_jsonl(tmp_path / "predict.jsonl", [{"id": row, "predict": ids[row] + [0, 0]} for row in (5, 2, 1)])
    return tmp_path


def run_decode(shared, folder, ref, *extra):
    return main(["--vocab", str(shared / "vocab"), "--sample_file", str(folder / "predict.jsonl"),
                 "--input_file", str(folder / "input.jsonl"), "--output_pred_file", str(folder / "pred.txt"),
                 "--output_ref_file", str(folder / ref), *extra])


def test_e2e_layout_groups_references_by_context(shared, small_run):
    assert run_decode(shared, small_run, "ref.txt") == 0
    assert (small_run / "ref.txt").read_text(encoding="utf-8") == \
        "First A .\nSecond A\n\nOnly B , fine .\n\nC one\nC two\nC three\n\n"
    assert (small_run / "pred.txt").read_text(encoding="utf-8") == "The X's pub.\nY-Bar, £20\nZed Café!!\n"


def test_webnlg_layout_writes_one_file_per_reference(shared, small_run):
    assert run_decode(shared, small_run, "refs", "--ref_type", "webnlg", "--ref_num", "3", "--lower",
                      "--tokenize") == 0
    files = [(small_run / "refs" / f"reference{k}").read_text(encoding="utf-8") for k in range(3)]
    assert files == ["first a .\nonly b , fine .\nc one\n",
                     "second a\nonly b , fine .\nc two\n",
                     "first a .\nonly b , fine .\nc three\n"]
    assert (small_run / "pred.txt").read_text(encoding="utf-8") == \
        "the x ' s pub .\ny - bar , £ 20\nzed café ! !\n"


def test_tokenize_and_lower_as_microsoft_lora():
    assert tokenize_words("The  Eagle's  price:£20-25.") == "The Eagle ' s price : £ 20 - 25 ."
    assert post_process("Café ABC", tokenize=False, lower=True) == "café abc"


def test_a_context_without_prediction_is_an_error(shared, small_run, capsys):
    rows = [json.loads(line) for line in (small_run / "predict.jsonl").read_text().splitlines()]
    write_jsonl(small_run / "predict.jsonl", rows[:2])
    assert run_decode(shared, small_run, "ref.txt") == 1
    error = capsys.readouterr().err
    assert "predict.jsonl" in error and "a : x" in error


def test_a_bad_prediction_row_names_its_line(shared, small_run, capsys):
    lines = (small_run / "predict.jsonl").read_text().splitlines()
    lines[1] = json.dumps({"id": 17, "predict": [1, 2]})
    (small_run / "predict.jsonl").write_text("\n".join(lines) + "\n")
    assert run_decode(shared, small_run, "ref.txt") == 1
    error = capsys.readouterr().err
    assert "predict.jsonl: line 2" in error and "17" in error


def test_encoded_rows_decode_back_to_the_references(shared, tmp_path):
    # predictions equal to the encoded completions give prediction == first reference
    rows = [{"context": "n : A", "completion": "Alpha is here ."}, {"context": "n : B", "completion": "Beta ."}]
    encoded = encode_rows(rows, load_tokenizer(shared / "vocab"))
    write_jsonl(tmp_path / "input.jsonl", rows)
    write_jsonl(tmp_path / "predict.jsonl", [{"id": i, "predict": row["completion"] + [0] * 5}
                                             for i, row in enumerate(encoded)])
    assert run_decode(shared, tmp_path, "ref.txt") == 0
    assert (tmp_path / "pred.txt").read_text() == "Alpha is here .\nBeta .\n"
