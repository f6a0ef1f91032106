"""The per-step cost of --dropout_rng shared against each framework's own dropout, on the CPU.

    environments/run torch python -m bench.dropout_cost            (runs both frameworks, prints the table)
    environments/run jittor python -m bench.dropout_cost --framework jittor    (one framework, JSON)

On the embedded default (recipes/embedded/e2e.yaml: gpt2.tiny, batches of 16, LoRA on six targets) with
--lora_dropout 0.1, each step applies the adapter dropout of every adapted layer, forward and backward, to inputs
of the shapes that layer sees on the first --steps training batches of E2E, once with the framework's dropout and
once with the shared masks. The time is CPU time of the process (one thread), which a busy machine changes less
than wall time; a step's cost is the mean over the steps after the first --warmup (Jittor compiles its kernels
there), and the result the median of --repeats. For scale, --full_steps training steps of the whole model
(forward, backward, framework dropout) are timed the same way.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from common_data.training import batching
from common_data.cli.config_file import load_file
from common_data.model.gpt2_config import AdapterConfig, config_for_card
from common_data.util.paths import REPO_ROOT
from common_data.training.dropout_masks import SharedMasks

RECIPE = REPO_ROOT / "recipes" / "embedded" / "e2e.yaml"
DROPOUT = 0.1


def recipe_batches(steps):
    """(config, adapter config, the first `steps` training batches) of the embedded default, dropout 0.1."""
    train = load_file(RECIPE)["train"]
    config = config_for_card(train["model_card"])
    adapter = AdapterConfig(adapter="lora", lora_dim=train["lora_dim"], lora_alpha=float(train["lora_alpha"]),
                            lora_dropout=DROPOUT, targets=tuple(train["lora_targets"]))
    examples = batching.make_examples(batching.load_encoded(REPO_ROOT / train["train_data"]), train["seq_len"])
    batches = batching.train_batches(examples, batching.BatchConfig(train["train_batch_size"], train["seq_len"]),
                                     train["random_seed"], 1)
    return config, adapter, [next(batches) for _ in range(steps)]


def cpu_ms(work):
    start = time.process_time()
    work()
    return 1000 * (time.process_time() - start)


def measure(api, args):
    """{source: [ms per step of each repeat]} and the full step's ms, in the framework of `api`."""
    config, adapter, batches = recipe_batches(args.warmup + args.steps)
    model = api.model(config, adapter)
    widths = [layer.weight.shape[0] for layer in api.adapted_layers(model)]
    masks = SharedMasks(seed=110, rows=range(batches[0].input_ids.shape[0]))
    dropouts = {"framework": [api.framework_dropout(DROPOUT)] * len(widths),
                "shared": [api.shared_dropout(DROPOUT, masks, layer, 0) for layer in range(len(widths))]}
    samples = {source: [] for source in dropouts}
    for _ in range(args.repeats):
        for source, layers in dropouts.items():
            times = []
            for step, batch in enumerate(batches, 1):
                masks.step = step
                inputs = [api.random_input((*batch.input_ids.shape, width)) for width in widths]
                times.append(cpu_ms(lambda: api.forward_backward(layers, inputs)))
            samples[source].append(statistics.mean(times[args.warmup:]))
    full = [cpu_ms(lambda: api.train_step(model, batch)) for batch in batches[:args.warmup + args.full_steps]]
    return {"dropout_ms": samples, "full_step_ms": statistics.mean(full[args.warmup:])}


class TorchApi:

    def __init__(self):
        import torch
        from NLG_pytorch.src import adapters, dropout, model
        torch.set_num_threads(1)
        self.torch, self.adapters, self.dropout, self.model_module = torch, adapters, dropout, model

    def model(self, config, adapter):
        model = self.model_module.GPT2LMModel(config, adapter, seed=0).train()
        self.adapters.mark_only_adapter_as_trainable(model)
        return model

    def adapted_layers(self, model):
        return self.adapters.adapted_layers(model)

    def framework_dropout(self, p):
        return self.torch.nn.Dropout(p)

    def shared_dropout(self, p, masks, layer, tensor):
        return self.dropout.SharedDropout(p, masks, layer, tensor)

    def random_input(self, shape):
        return self.torch.randn(shape, requires_grad=True)

    def forward_backward(self, layers, inputs):
        for layer, x in zip(layers, inputs):
            layer(x).sum().backward()

    def train_step(self, model, batch):
        tensors = [self.torch.from_numpy(a) for a in (batch.input_ids, batch.targets, batch.loss_mask)]
        model(tensors[0], targets=tensors[1], loss_mask=tensors[2])[1].backward()


class JittorApi:

    def __init__(self):
        import jittor as jt
        from NLG_jittor.src import adapters, dropout, model
        self.jt, self.adapters, self.dropout, self.model_module = jt, adapters, dropout, model

    def model(self, config, adapter):
        model = self.model_module.GPT2LMModel(config, adapter, seed=0)
        model.train()
        self.adapters.mark_only_adapter_as_trainable(model)
        return model

    def adapted_layers(self, model):
        return self.adapters.adapted_layers(model)

    def framework_dropout(self, p):
        return self.jt.nn.Dropout(p, is_train=True)

    def shared_dropout(self, p, masks, layer, tensor):
        return self.dropout.SharedDropout(p, masks, layer, tensor)

    def random_input(self, shape):
        return self.jt.randn(shape).sync()

    def forward_backward(self, layers, inputs):
        grads = [self.jt.grad(layer(x).sum(), x) for layer, x in zip(layers, inputs)]
        self.jt.sync(grads)

    def train_step(self, model, batch):
        tensors = [self.jt.array(a) for a in (batch.input_ids, batch.targets, batch.loss_mask)]
        loss = model(tensors[0], targets=tensors[1], loss_mask=tensors[2])[1]
        params = [p for p in model.parameters() if p.requires_grad]
        self.jt.sync(self.jt.grad(loss, params))


def run_framework(framework, args):
    """This script in the framework's environment, one thread; its JSON result."""
    env = {key: value for key, value in os.environ.items() if key not in ("NLG_FRAMEWORK", "VIRTUAL_ENV")}
    command = [str(REPO_ROOT / "environments" / "run"), framework, "python", "-m", "bench.dropout_cost",
               "--framework", framework, "--steps", str(args.steps), "--warmup", str(args.warmup),
               "--repeats", str(args.repeats), "--full_steps", str(args.full_steps)]
    result = subprocess.run(command, cwd=REPO_ROOT, env={**env, "OMP_NUM_THREADS": "1"}, check=True,
                            capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--framework", choices=["torch", "jittor"], default=None,
                        help="measure in this framework (its environment) and print JSON; without it: both")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per repeat")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--full_steps", type=int, default=5, help="timed whole-model steps, for scale")
    parser.add_argument("--out", default=None, help="JSON file for the samples and medians")
    args = parser.parse_args(argv)
    if args.framework:
        api = TorchApi() if args.framework == "torch" else JittorApi()
        print(json.dumps(measure(api, args)))
        return 0
    results = {framework: run_framework(framework, args) for framework in ("torch", "jittor")}
    for framework, result in results.items():
        own, shared = (statistics.median(result["dropout_ms"][source]) for source in ("framework", "shared"))
        print(f"{framework}: dropout forward+backward per step: own {own:.1f} ms, shared masks {shared:.1f} ms "
              f"({shared - own:+.1f} ms = {100 * (shared - own) / result['full_step_ms']:+.1f}% of a "
              f"{result['full_step_ms']:.0f} ms training step); repeats own {result['dropout_ms']['framework']}, "
              f"shared {result['dropout_ms']['shared']}")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
