"""The peft side of test_jittor_peft.py, run in the torch environment: python tests/jittor/peft_side.py HF_DIR WORK.

Writes, for every adapter folder WORK/exports/NAME, peft's logits on WORK/ids.npy as WORK/exports/NAME.npy; and a
peft LoRA adapter with random nonzero A and B (as after training) as WORK/made, with its logits as WORK/made.npy.
"""
import sys
from pathlib import Path

import numpy as np
import peft
import torch
import transformers


def logits(model, ids):
    with torch.no_grad():
        return model.eval()(input_ids=torch.from_numpy(ids)).logits.numpy()


def main(hf_dir, work):
    work = Path(work)
    ids = np.load(work / "ids.npy")
    for folder in sorted(path for path in (work / "exports").iterdir() if path.is_dir()):
        model = peft.PeftModel.from_pretrained(transformers.GPT2LMHeadModel.from_pretrained(hf_dir), folder)
        np.save(folder.with_suffix(".npy"), logits(model, ids))
    torch.manual_seed(0)
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn", "mlp.c_fc"], fan_in_fan_out=True,
                             use_rslora=True)
    model = peft.get_peft_model(transformers.GPT2LMHeadModel.from_pretrained(hf_dir), config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.copy_(0.1 * torch.randn_like(param))
    np.save(work / "made.npy", logits(model, ids))
    model.save_pretrained(work / "made")


if __name__ == "__main__":
    main(*sys.argv[1:])
