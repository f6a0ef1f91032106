"""The shared gpt2_ft.py command line: microsoft/LoRA's flags and defaults, our additions, clear errors."""
import subprocess
import sys

import pytest

from common_data.cli.ft_args import build_parser, parse_args
from NLG_pytorch.src import gpt2_ft

# microsoft/LoRA's README command for GPT-2 M on E2E
LORA_README_COMMAND = """--train_data ./data/e2e/train.jsonl --valid_data ./data/e2e/valid.jsonl --train_batch_size 8
    --grad_acc 1 --valid_batch_size 4 --seq_len 512 --model_card gpt2.md
    --init_checkpoint ./pretrained_checkpoints/gpt2-medium-pytorch_model.bin --platform local --clip 0.0 --lr 0.0002
    --weight_decay 0.01 --correct_bias --adam_beta2 0.999 --scheduler linear --warmup_step 500 --max_epoch 5
    --save_interval 1000 --lora_dim 4 --lora_alpha 32 --lora_dropout 0.1 --label_smooth 0.1
    --work_dir ./trained_models/GPT2_M/e2e --random_seed 110""".split()


def test_the_microsoft_lora_command_line_parses():
    args = parse_args(LORA_README_COMMAND)
    assert (args.lr, args.adam_beta2, args.correct_bias, args.warmup_step, args.max_epoch) == \
        (2e-4, 0.999, True, 500, 5)
    assert (args.lora_dim, args.lora_alpha, args.lora_dropout, args.label_smooth) == (4, 32, 0.1, 0.1)
    assert (args.adapter, args.lora_targets, args.max_step, args.fp16, args.bf16) == \
        ("lora", ("q", "v"), None, False, False)


def test_defaults_are_microsoft_loras():
    args = parse_args(["--train_data", "t", "--valid_data", "v", "--max_epoch", "1"])
    assert (args.train_batch_size, args.valid_batch_size, args.grad_acc, args.clip, args.seq_len) == (8, 4, 1, 0.0, 512)
    assert (args.model_card, args.lr, args.weight_decay, args.correct_bias) == ("gpt2.md", 1e-5, 0.01, False)
    assert (args.adam_epislon, args.adam_beta1, args.adam_beta2, args.scheduler, args.warmup_step) == \
        (1e-6, 0.9, 0.98, "linear", 0)
    assert (args.log_interval, args.eval_interval, args.save_interval, args.random_seed) == (100, 2000, 500, 10)
    assert (args.lora_dim, args.lora_alpha, args.lora_dropout, args.label_smooth) == (0, 128, 0.0, 0.0)


@pytest.mark.parametrize("extra, message", [
    ([], "--max_epoch or --max_step"),
    (["--max_step", "5", "--lora_targets", "q,x"], "unknown"),
    (["--max_step", "5", "--switch_step", "3"], "--adapter jelly --jelly_mode seq2par"),
    (["--max_step", "5", "--adapter", "jelly", "--lora_dim", "4"], "needs --switch_epoch or --switch_step"),
    (["--max_step", "5", "--adapter", "jelly", "--lora_dim", "4", "--switch_step", "1", "--switch_epoch", "0.5"],
     "not both"),
    (["--max_step", "5", "--grad_acc", "3", "--save_interval", "10"], "multiple of --grad_acc"),
    (["--max_step", "5", "--fp16", "--bf16"], "not allowed with"),
    (["--max_step", "5", "--train_batch_size", "0"], "--train_batch_size must be at least 1"),
    (["--max_step", "5", "--model_card", "gpt2.tiny", "--seq_len", "1024"], "512 positions of gpt2.tiny"),
    (["--max_step", "5", "--adapter", "adalora", "--init_r", "4", "--target_r", "4"], "--target_r 4 must lie in"),
    (["--max_step", "5", "--adapter", "adalora", "--init_r", "4", "--target_r", "2", "--grad_acc", "2",
      "--save_interval", "2"], "give --grad_acc 1"),
])
def test_bad_combinations_stop_with_the_flag_named(extra, message, capsys):
    with pytest.raises(SystemExit) as stop:
        parse_args(["--train_data", "t", "--valid_data", "v", *extra])
    assert stop.value.code == 2
    assert message in capsys.readouterr().err


def test_jelly_seq2par_with_a_fractional_switch_epoch_parses():
    args = parse_args(["--train_data", "t", "--valid_data", "v", "--max_epoch", "5", "--adapter", "jelly",
                       "--lora_dim", "4", "--switch_epoch", "2.5", "--lora_targets", "q, v,c_fc"])
    assert (args.jelly_mode, args.switch_epoch, args.lora_targets) == ("seq2par", 2.5, ("q", "v", "c_fc"))


def test_the_script_prints_help():
    result = subprocess.run([sys.executable, gpt2_ft.__file__, "--help"], capture_output=True, text=True, check=True)
    for flag in (action.option_strings[0] for action in build_parser()._actions if action.option_strings):
        assert flag in result.stdout
    assert "gpt2.tiny" in result.stdout and "global batch" in result.stdout
