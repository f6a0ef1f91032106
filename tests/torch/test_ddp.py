"""torchrun with two CPU processes (gloo) gives the losses and weights of one process with the same global batch."""
import subprocess
import sys

import numpy as np
import pytest

from common_data.model.checkpoint import load_model_checkpoint
from common_data.training.runlog import read_metrics
from NLG_pytorch.src import gpt2_ft


def flags(data, work_dir):
    # dropout off (ranks draw different masks); gradient accumulation exercises DDP's no_sync, and the JELLY
    # switch at step 2 changes the shape of the c_fc adapters under DDP
    return ["--train_data", str(data["train"]), "--valid_data", str(data["valid"]), "--model_card", "gpt2.tiny",
            "--work_dir", str(work_dir), "--train_batch_size", "8", "--valid_batch_size", "8", "--grad_acc", "2",
            "--adapter", "jelly", "--switch_step", "2", "--lora_targets", "q,v,c_fc", "--lora_dim", "4",
            "--lora_alpha", "32", "--lr", "0.002", "--correct_bias", "--adam_beta2", "0.999",
            "--max_step", "4", "--log_interval", "1", "--save_interval", "4", "--eval_interval", "4"]


def logged(work_dir, kind, field):
    return [event[field] for event in read_metrics(work_dir / "metrics.jsonl") if event["event"] == kind]


def test_two_ranks_give_the_losses_of_one_process(e2e_encoded, tmp_path):
    single, ranks = tmp_path / "single", tmp_path / "ranks"
    assert gpt2_ft.main(flags(e2e_encoded, single)) == 0
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             gpt2_ft.__file__, *flags(e2e_encoded, ranks)],
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("| epoch") == 4  # only rank 0 prints

    assert logged(ranks, "train", "step") == [1, 2, 3, 4]
    assert logged(ranks, "train", "adapter_mode") == ["sequential"] * 2 + ["parallel"] * 2
    assert logged(ranks, "train", "loss") == pytest.approx(logged(single, "train", "loss"), abs=1e-5)
    assert logged(ranks, "train", "tokens") == logged(single, "train", "tokens")
    assert logged(ranks, "eval", "valid_loss") == pytest.approx(logged(single, "eval", "valid_loss"), abs=1e-5)
    final_ranks, _ = load_model_checkpoint(ranks / "model.4.safetensors")
    final_single, _ = load_model_checkpoint(single / "model.4.safetensors")
    for name, array in final_single.items():
        np.testing.assert_allclose(final_ranks[name], array, atol=1e-5, err_msg=name)
