"""NLG_pytorch and NLG_jittor are mirror images: the same files; each pair of Python sources differs in at most 15%
of its lines (framework-bound files exempt, each for its reason), and the pipeline scripts only in the lines that
name their framework."""
import difflib

import pytest

from common_data.util.paths import REPO_ROOT

LIMIT = 0.15
EXEMPT = {
    "ops.py": "the framework operations themselves: torch's functions against Jittor's kernels",
    "run_info.py": "versions, device names and memory as each framework reports them",
    "rng_state.py": "each framework's random generator state",
    "distributed.py": "torch.distributed against MPI",
    "beam_bench.py": "PyTorch's search is timed against transformers' generate, Jittor's against PyTorch's",
}
FOLDERS = ("src", "scripts")


def twins(folder):
    """(PyTorch's file names, Jittor's file names) in NLG_*/folder."""
    return tuple({path.name for path in (REPO_ROOT / side / folder).iterdir() if path.is_file()}
                 for side in ("NLG_pytorch", "NLG_jittor"))


def differing_share(name, folder):
    """Lines that only one file of the pair has, as a share of both files' lines."""
    lines = [(REPO_ROOT / side / folder / name).read_text(encoding="utf-8").splitlines()
             for side in ("NLG_pytorch", "NLG_jittor")]
    matched = sum(block.size for block in difflib.SequenceMatcher(None, *lines, autojunk=False).get_matching_blocks())
    return (len(lines[0]) + len(lines[1]) - 2 * matched) / max(1, len(lines[0]) + len(lines[1]))


@pytest.mark.parametrize("folder", FOLDERS)
def test_both_frameworks_have_the_same_files(folder):
    torch_files, jittor_files = twins(folder)
    assert torch_files == jittor_files


@pytest.mark.parametrize("name", sorted(name for name in twins("src")[0] if name.endswith(".py") and name not in EXEMPT))
def test_a_mirror_pair_differs_in_few_lines(name):
    assert differing_share(name, "src") <= LIMIT


@pytest.mark.parametrize("name", sorted(twins("scripts")[0]))
def test_the_pipeline_scripts_differ_only_where_they_name_their_framework(name):
    lines = [(REPO_ROOT / side / "scripts" / name).read_text(encoding="utf-8").splitlines()
             for side in ("NLG_pytorch", "NLG_jittor")]
    changed = [line[1:] for line in difflib.ndiff(*lines) if line[:1] in "+-"]
    assert changed and all("torch" in line or "jittor" in line for line in changed)
