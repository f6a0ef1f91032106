"""GPT-2 encoding: byte-identical to microsoft/LoRA's gpt2_encode.py output, and decoding back."""
import pytest

from common_data.cli import nlg_data
from common_data.data.encoding import END_OF_TEXT, decode, encode_rows, load_tokenizer
from common_data.util.jsonl import read_jsonl


@pytest.fixture(scope="module")
def tokenizer(shared):
    return load_tokenizer(shared / "vocab")


def test_encoded_fixture_is_byte_identical(shared, tmp_path):
    fixture = shared / "fixtures/seed_run"
    output = tmp_path / "e2e_test_sampled_encoded.jsonl"
    nlg_data.main(["encode", str(fixture / "e2e_test_sampled_formatted.jsonl"), str(output),
              "--vocab", str(shared / "vocab")])
    assert output.read_bytes() == (fixture / "e2e_test_sampled_encoded.jsonl").read_bytes()


def test_ids_of_an_e2e_context(tokenizer):
    (row,) = encode_rows([{"context": "name : Blue Spice | Type : coffee shop", "completion": "Hi ."}], tokenizer)
    assert row["context"][:5] == [3672, 1058, 4518, 43537, 930]
    assert row["context"][-1] == END_OF_TEXT and row["completion"][-1] == END_OF_TEXT
    assert list(row) == ["context", "completion"]


@pytest.mark.parametrize("text", [
    "Adolfo_Suárez_Madrid–Barajas_Airport : location : Alcobendas",
    "near Rainbow Vegetarian Café , £ 20 - 25",
    "Atatürk_Monument_(İzmir) : designer : Pietro_Canonica",
])
def test_decode_inverts_encode(tokenizer, text):
    (row,) = encode_rows([{"context": text, "completion": text}], tokenizer)
    assert decode(row["context"]) == text + "<|endoftext|>"
    assert decode(row["completion"], tokenizer) == " " + text + "<|endoftext|>"


def test_decoded_beam_output_is_the_earlier_ports_predictions(shared, tokenizer):
    # That port's decode step: text up to <|endoftext|> and "\n\n", one prediction per context.
    fixture = shared / "fixtures/seed_run"
    predicted = sorted(read_jsonl(fixture / "torch_e2e_predict.jsonl"), key=lambda row: row["id"])
    contexts = [row["context"] for row in read_jsonl(fixture / "e2e_test_sampled_formatted.jsonl")]
    first_per_context = {}
    for context, row in zip(contexts, predicted):
        text = decode(row["predict"], tokenizer).split("<|endoftext|>")[0].split("\n\n")[0].strip()
        first_per_context.setdefault(context, text)
    expected = (fixture / "torch_e2e_pred.txt").read_text(encoding="utf-8").splitlines()
    assert list(first_per_context.values()) == expected
