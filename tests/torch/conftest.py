import pytest

from common_data.data.encoding import encode_rows, load_tokenizer
from common_data.util.jsonl import read_jsonl, write_jsonl


@pytest.fixture(scope="session")
def e2e_encoded(shared, tmp_path_factory):
    """A small encoded E2E training and validation file (the first 400 and the last 24 rows of the 18%
    training sample), made with the data pipeline's encoder so that tests need no `make data`."""
    rows = read_jsonl(shared / "datasets/e2e/train_sampled18_formatted.jsonl")
    tokenizer = load_tokenizer(shared / "vocab")
    folder = tmp_path_factory.mktemp("e2e_encoded")
    write_jsonl(folder / "train.jsonl", encode_rows(rows[:400], tokenizer))
    write_jsonl(folder / "valid.jsonl", encode_rows(rows[-24:], tokenizer))
    return {"train": folder / "train.jsonl", "valid": folder / "valid.jsonl"}


@pytest.fixture(scope="session")
def random_hf_gpt2(tmp_path_factory):
    """write(hf_config) -> a folder with a random GPT2LMHeadModel that transformers saved (every weight moved off its
    initialisation, so that no bias or LayerNorm is trivially 0 or 1) and base.safetensors, its import-hf."""
    import torch
    import transformers

    import model_process

    def write(hf_config):
        torch.manual_seed(0)
        hf_model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**hf_config))
        with torch.no_grad():
            for param in hf_model.parameters():
                param.add_(0.05 * torch.randn_like(param))
        folder = tmp_path_factory.mktemp("hf")
        hf_model.save_pretrained(folder)
        assert model_process.main(["import-hf", str(folder), str(folder / "base.safetensors")]) == 0
        return folder

    return write


@pytest.fixture(params=["oneDNN", "torch"])
def library(request, monkeypatch):
    """The products' library: oneDNN from the system's libdnnl, which environments/system_packages.sh installs, or
    torch's, which runs without it."""
    from NLG_pytorch.src import ops

    if request.param == "torch":
        monkeypatch.setattr(ops, "onednn_sgemm", lambda: None)
    else:
        assert ops.onednn_sgemm() is not None
    return request.param


@pytest.fixture(params=["shared kernels", "torch's ops"])
def kernels(request, monkeypatch):
    """The CPU kernels of common_data/kernels (compiled here: the test fails if they do not compile), or the torch ops
    that run where they do not."""
    from NLG_pytorch.src import ops

    if request.param == "torch's ops":
        monkeypatch.setattr(ops, "cpu_kernels", lambda: None)
    else:
        assert ops.cpu_kernels() is not None
    return request.param
