"""The recipes (recipes/): valid for both commands, the LoRA paper's numbers, and how the pipeline scripts read them."""
import subprocess

import pytest

from common_data.cli.recipe import recipe_values
from common_data.util.paths import REPO_ROOT

RECIPES = sorted((REPO_ROOT / "recipes").rglob("*.yaml"))
DATASETS = ("e2e", "webnlg", "dart")
# the comparison methods on the embedded E2E default: what each recipe changes in recipes/embedded/e2e.yaml
METHODS = {"bitfit": {"adapter": "bitfit", "lora_dim": 0}, "dora": {"adapter": "dora"}, "pissa": {"adapter": "pissa"},
           "adalora": {"adapter": "adalora", "lora_dim": 12, "target_r": 8, "tinit": 30, "tfinal": 60, "deltaT": 10},
           "rslora": {"use_rslora": True},
           "loraplus": {"loraplus_lr_ratio": 16.0, "lr": 0.0005},
           # full fine-tuning saves the whole model and its moments (192 MiB): at the end only
           "full": {"lora_dim": 0, "lr": 0.0005, "save_interval": 1200}}
# Hu et al. 2021, Table 11 (GPT-2 L uses GPT-2 M's), with microsoft/LoRA's commands for the flags it does not list
PAPER_TRAIN = {"train_batch_size": 8, "max_epoch": 5, "lr": 0.0002, "weight_decay": 0.01, "correct_bias": True,
               "adam_beta2": 0.999, "scheduler": "linear", "warmup_step": 500, "lora_dim": 4, "lora_alpha": 32,
               "lora_dropout": 0.1, "lora_targets": ("q", "v"), "seq_len": 512, "random_seed": 110}
PAPER_BEAM = {"beam": 10, "no_repeat_ngram_size": 4, "seq_len": 512, "eos_token_id": [628]}


def sections(path):
    values = {"train": {}, "beam": {}, "verdict": {}}
    for section, key, value in recipe_values(path):
        values[section][key] = value
    return values


def test_the_recipes_are_there():
    names = {str(path.relative_to(REPO_ROOT / "recipes")) for path in RECIPES}
    assert names == {f"embedded/{dataset}.yaml" for dataset in DATASETS} | \
        {"embedded/e2e_regularised.yaml", "embedded/e2e_long.yaml"} | \
        {f"lora_paper/{dataset}_gpt2_{size}.yaml" for dataset in DATASETS for size in ("md", "lg")} | \
        {f"methods/e2e_{method}.yaml" for method in METHODS}


@pytest.mark.parametrize("method", METHODS)
def test_the_method_recipes_change_the_embedded_default_in_their_method_only(method):
    embedded = sections(REPO_ROOT / "recipes" / "embedded" / "e2e.yaml")
    values = sections(REPO_ROOT / "recipes" / "methods" / f"e2e_{method}.yaml")
    assert values["beam"] == embedded["beam"]
    changed = {key: value for key, value in values["train"].items() if embedded["train"].get(key) != value}
    dropped = set(embedded["train"]) - set(values["train"])
    assert changed == METHODS[method]
    assert dropped <= {"lora_alpha", "lora_dropout", "lora_targets"} and (not dropped or method in ("bitfit", "full"))


@pytest.mark.parametrize("path", RECIPES, ids=lambda path: path.stem)
def test_every_recipe_is_valid_for_both_commands_and_names_its_dataset(path):
    values = sections(path)
    dataset = path.stem.split("_")[0]
    assert values["train"]["train_data"] == f"common_data/{dataset}/encoded/train.jsonl"
    assert values["beam"]["data"] == f"common_data/{dataset}/encoded/test.jsonl"
    assert values["beam"]["model_card"] == values["train"]["model_card"]
    assert values["beam"]["seq_len"] == values["train"]["seq_len"]


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("size, card", [("md", "gpt2.md"), ("lg", "gpt2.lg")])
def test_the_paper_recipes_hold_table_11(dataset, size, card):
    values = sections(REPO_ROOT / "recipes" / "lora_paper" / f"{dataset}_gpt2_{size}.yaml")
    assert values["train"] | PAPER_TRAIN == values["train"] and values["beam"] | PAPER_BEAM == values["beam"]
    assert values["train"]["model_card"] == card
    assert values["train"]["label_smooth"] == (0.1 if dataset == "e2e" else 0.0)
    assert values["beam"]["length_penalty"] == (0.9 if dataset == "e2e" else 0.8)
    # the verdict replays a segment every 2,000 steps, with the masks both frameworks draw alike, for under 5% more
    assert values["train"]["dropout_rng"] == "shared" and values["verdict"]["segment_every"] == 2000
    assert values["verdict"]["segment_steps"] / values["verdict"]["segment_every"] <= 0.05


def test_the_embedded_recipes_differ_in_their_data_and_length_only():
    recipes = {dataset: sections(REPO_ROOT / "recipes" / "embedded" / f"{dataset}.yaml") for dataset in DATASETS}
    run_length = {"max_step", "eval_interval", "train_data", "valid_data", "data", "length_penalty"}
    for dataset, recipe in recipes.items():
        for section in ("train", "beam"):
            other = {key: value for key, value in recipes["e2e"][section].items() if key not in run_length}
            assert {key: value for key, value in recipe[section].items() if key not in run_length} == other
        steps = recipe["train"]["max_step"]
        # validated at the start, the half and the end; segments from the saves (every 20 steps) at the warm-up, the
        # peak rate, the middle and the end
        assert recipe["train"]["eval_interval"] == steps // 2 and recipe["train"]["save_interval"] == 20
        assert recipe["verdict"] == {"segment_steps": 20, "segments": (0, 20, steps // 40 * 20, steps - 20)}
    assert [recipes[dataset]["train"]["max_step"] for dataset in DATASETS] == [1200, 700, 600]


def test_the_long_variant_takes_batches_of_16_and_the_papers_wider_search_only():
    default, variant = (sections(REPO_ROOT / "recipes" / "embedded" / name)
                        for name in ("e2e.yaml", "e2e_long.yaml"))
    changed = {section: {key: value for key, value in variant[section].items() if default[section].get(key) != value}
               for section in ("train", "beam")}
    assert changed == {"train": {"max_step": 600, "warmup_step": 20, "eval_interval": 200, "train_batch_size": 16},
                       "beam": {"beam": 10, "length_penalty": 0.9, "batch_size": 8, "eval_len": 64}}
    assert all(set(default[section]) == set(variant[section]) for section in ("train", "beam"))
    # its runs drift apart by rounding: the verdict replays warm-up, the peak rate, the middle and the end
    assert variant["verdict"] == {"segment_steps": 20, "segments": (0, 20, 300, 580)}


def test_the_regularised_variant_adds_the_papers_dropout_and_smoothing_with_shared_masks_only():
    default, variant = (sections(REPO_ROOT / "recipes" / "embedded" / name) for name in ("e2e.yaml",
                                                                                         "e2e_regularised.yaml"))
    assert variant["beam"] == default["beam"]
    changed = {key: value for key, value in variant["train"].items() if default["train"].get(key) != value}
    assert changed == {"lora_dropout": 0.1, "label_smooth": 0.1, "dropout_rng": "shared"}
    assert set(default["train"]) - set(variant["train"]) == set()
    flags = pipeline_flags(RECIPE="recipes/embedded/e2e_regularised.yaml")
    assert flags["train"]["--config"] == "recipes/embedded/e2e_regularised.yaml"
    assert (flags["train"]["--lora_dropout"], flags["train"]["--label_smooth"]) == ("0.1", "0.1")


def pipeline_flags(*options, **variables):
    """{flag: value} that the pipeline scripts pass to gpt2_ft.py (train) and gpt2_beam.py (beam)."""
    script = ('source scripts/steps.sh; parse_options "$@"; set_defaults; '
              'set_flags "${TRAIN_FLAGS[@]}"; echo "TRAIN ${FLAGS[*]} --config $RECIPE"; '
              'set_flags "${BEAM_FLAGS[@]}"; echo "BEAM ${FLAGS[*]} --config $RECIPE"')
    result = subprocess.run(["bash", "-c", script, "steps", *options], capture_output=True, text=True,
                            cwd=REPO_ROOT, env={"PATH": "/usr/bin:/bin", "FRAMEWORK": "torch", **variables})
    assert result.returncode == 0, result.stderr
    flags = {}
    for line in result.stdout.splitlines():
        step, *words = line.split()
        flags[step.lower()] = dict(zip(words[::2], words[1::2]))
    return flags


def test_the_pipeline_passes_the_recipe_and_the_options_that_are_set():
    flags = pipeline_flags("--lr", "0.5", LORA_DIM="2")
    assert flags["train"]["--config"] == flags["beam"]["--config"] == "recipes/embedded/e2e.yaml"
    assert (flags["train"]["--lr"], flags["train"]["--lora_dim"], flags["train"]["--max_step"]) == ("0.5", "2", "1200")
    assert (flags["train"]["--eval_interval"], flags["train"]["--train_batch_size"]) == ("600", "8")
    assert (flags["beam"]["--beam"], flags["beam"]["--batch_size"], flags["beam"]["--seq_len"]) == ("4", "16", "128")


def test_an_adapter_with_a_method_recipe_selects_it():
    flags = pipeline_flags(ADAPTER="bitfit")
    assert flags["train"]["--config"] == "recipes/methods/e2e_bitfit.yaml"
    assert (flags["train"]["--adapter"], flags["train"]["--lora_dim"]) == ("bitfit", "0")
    assert pipeline_flags("--recipe", "recipes/methods/e2e_bitfit.yaml")["train"]["--adapter"] == "bitfit"
    assert pipeline_flags(INIT_CHECKPOINT="gpt2-medium.safetensors", ADAPTER="bitfit")["train"]["--config"] == \
        "recipes/lora_paper/e2e_gpt2_md.yaml"


def test_a_run_shorter_than_its_validation_interval_validates_at_its_end():
    assert pipeline_flags(MAX_STEP="40")["train"]["--eval_interval"] == "40"
    assert pipeline_flags(MAX_STEP="40", EVAL_INTERVAL="100")["train"]["--eval_interval"] == "100"


def test_init_checkpoint_selects_the_paper_recipe_and_recipe_another(tmp_path):
    flags = pipeline_flags(INIT_CHECKPOINT="gpt2-medium.safetensors", DATASET="dart")
    assert flags["train"]["--config"] == "recipes/lora_paper/dart_gpt2_md.yaml"
    assert (flags["train"]["--model_card"], flags["train"]["--max_epoch"], flags["beam"]["--length_penalty"]) == \
        ("gpt2.md", "5", "0.8")
    assert "--max_step" not in flags["train"]
    recipe = tmp_path / "mine.yaml"
    recipe.write_text("train:\n  lr: 0.01\n  max_step: 7\nbeam:\n  beam: 2\n", encoding="utf-8")
    flags = pipeline_flags("--recipe", str(recipe))
    assert (flags["train"]["--lr"], flags["train"]["--max_step"], flags["beam"]["--beam"]) == ("0.01", "7", "2")


def test_the_pipeline_stops_on_a_bad_recipe(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("train:\n  lr: fast\nbeam: {}\n", encoding="utf-8")
    result = subprocess.run(["scripts/steps.sh", "train", "--recipe", str(recipe)], capture_output=True,
                            text=True, cwd=REPO_ROOT)
    assert result.returncode == 2
    assert f"{recipe}: train: key 'lr': expected a number, got 'fast'" in result.stderr


def test_validation_rows_are_spread_over_the_split(tmp_path):
    lines = [f"{i}\n" for i in range(10)]
    (tmp_path / "valid.jsonl").write_text("".join(lines))

    def spread(n):
        result = subprocess.run(["bash", "-c", 'source scripts/steps.sh; spread_rows "$@"', "steps", str(n),
                                 str(tmp_path / "valid.jsonl")], capture_output=True, text=True, cwd=REPO_ROOT)
        assert result.returncode == 0, result.stderr
        return result.stdout.split()

    assert spread(4) == ["0", "2", "5", "7"]
    assert spread(10) == spread(12) == [line.strip() for line in lines]
