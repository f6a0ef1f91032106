"""--config FILE of gpt2_ft.py and gpt2_beam.py: flag values from YAML or JSON, checked; the command line wins."""
import json

import pytest

from common_data.cli import beam_args, ft_args

REQUIRED = ["--valid_data", "v.jsonl", "--max_step", "5"]


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def train_args(config, *argv):
    return ft_args.parse_args(["--config", str(config), *REQUIRED, *argv])


def stop_message(parse, capsys):
    """The error line of a parse that must stop as a usage error."""
    with pytest.raises(SystemExit) as stop:
        parse()
    assert stop.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_a_file_gives_the_flags_and_the_command_line_wins(tmp_path):
    config = write(tmp_path / "c.yaml", "train_data: t.jsonl\nlr: 2e-4\nlora_targets: [q, v, c_fc]\n"
                                        "correct_bias: true\nwarmup_step: 10\nmodel_card: gpt2.tiny\n")
    args = train_args(config)
    assert (args.train_data, args.lr, args.lora_targets, args.correct_bias, args.warmup_step, args.model_card) == \
        ("t.jsonl", 2e-4, ("q", "v", "c_fc"), True, 10, "gpt2.tiny")
    assert args.config == str(config)
    args = train_args(config, "--lr", "0.5", "--lora_targets", "q,v", "--train_data", "other.jsonl")
    assert (args.lr, args.lora_targets, args.train_data, args.warmup_step) == (0.5, ("q", "v"), "other.jsonl", 10)


def test_a_repeated_flag_on_the_command_line_replaces_the_files_list(tmp_path):
    config = write(tmp_path / "beam.json", json.dumps({"data": "d.jsonl", "eos_token_id": [628, 198], "beam": 3}))
    args = beam_args.parse_args(["--config", str(config)])
    assert (args.data, args.eos_token_id, args.beam) == ("d.jsonl", [628, 198], 3)
    assert beam_args.parse_args(["--config", str(config), "--eos_token_id", "13"]).eos_token_id == [13]


@pytest.mark.parametrize("text, message", [
    ("lr: abc\n", "key 'lr': expected a number, got 'abc'"),
    ("max_step: 2.5\n", "key 'max_step': expected an integer, got 2.5"),
    ("seq_len: true\n", "key 'seq_len': expected an integer, got True"),
    ("correct_bias: 1\n", "key 'correct_bias': expected true or false, got 1"),
    ("lora_targets: 3\n", "key 'lora_targets': expected a list of names or a comma-separated string, got 3"),
    ("scheduler: cosine_restarts\n", "key 'scheduler': 'cosine_restarts' is not one of linear, constant, cosine"),
    ("model_card: gpt2.xl\n", "key 'model_card': 'gpt2.xl' is not one of"),
    ("learning_rate: 0.1\n", "unknown key 'learning_rate' (allowed: "),
    ("config: other.yaml\n", "unknown key 'config'"),
    ("lr: [0.1\n", "line 2: not valid YAML"),
    ("- lr\n", "expected a mapping of flag names to values, got list"),
    ("", "the file is empty"),
    ("beam:\n  beam: 4\n", "no 'train:' section of flag values (sections: beam)"),
])
def test_a_bad_file_stops_naming_the_file_and_the_key(tmp_path, capsys, text, message):
    config = write(tmp_path / "c.yaml", text)
    line = stop_message(lambda: train_args(config, "--train_data", "t"), capsys)
    assert line.startswith(f"{ft_args.build_parser().prog}: error: {config}") and message in line, line


def test_a_missing_file_and_bad_json_are_named(tmp_path, capsys):
    missing = tmp_path / "missing.yaml"
    assert f"--config {missing}: No such file" in stop_message(lambda: train_args(missing), capsys)
    broken = write(tmp_path / "run.json", '{"args": {"lr": 1,}}')
    assert f"{broken}: line 1: not valid JSON" in stop_message(lambda: train_args(broken), capsys)


def test_a_recipe_gives_each_command_its_section(tmp_path):
    recipe = write(tmp_path / "recipe.yaml", "train:\n  train_data: t.jsonl\n  lr: 0.002\n"
                                             "beam:\n  data: test.jsonl\n  beam: 10\n  length_penalty: 0.9\n")
    assert train_args(recipe).lr == 0.002
    args = beam_args.parse_args(["--config", str(recipe)])
    assert (args.data, args.beam, args.length_penalty) == ("test.jsonl", 10, 0.9)


def test_a_run_record_gives_its_arguments_and_keeps_config_and_debug_for_the_record(tmp_path):
    recorded = vars(ft_args.parse_args(["--train_data", "t", *REQUIRED, "--lora_targets", "q,k", "--bf16"]))
    record = write(tmp_path / "run.json", json.dumps({"args": {**recorded, "config": "x.yaml", "debug": True},
                                                     "status": "finished"}))
    args = vars(ft_args.parse_args(["--config", str(record)]))
    assert {**args, "config": None} == {**recorded, "lora_targets": ("q", "k")}


def test_flags_that_exclude_each_other_stop_when_the_file_sets_one_and_the_command_line_the_other(tmp_path, capsys):
    config = write(tmp_path / "c.yaml", "train_data: t\nbf16: true\n")
    assert train_args(config).bf16
    assert "--fp16 and --bf16 exclude each other" in stop_message(lambda: train_args(config, "--fp16"), capsys)


@pytest.mark.parametrize("parser", [ft_args.build_parser, beam_args.build_parser], ids=["gpt2_ft", "gpt2_beam"])
def test_the_help_describes_config_and_debug(parser):
    text = parser().format_help()
    assert "--config FILE" in text and "run record" in text and "--debug" in text and "NLG_DEBUG=1" in text
