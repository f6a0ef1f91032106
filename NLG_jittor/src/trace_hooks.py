"""Layer-by-layer records of training steps for `python -m alignment trace` (NLG_pytorch and NLG_jittor hold mirror
images of this file).

    python NLG_pytorch/src/trace_hooks.py --data rows.jsonl --model_card gpt2.tiny --lora_dim 4 --steps 2 \\
        --output torch.safetensors

probe.py's flags choose the model, the rows, the batches and the optimizer (dropout off). For each of --steps
training steps it writes into --output, under the keys of common_data.trace.names (step/phase/name/item):
  batch      the step's input ids, targets and loss mask
  forward    the input and the output (hidden state) of every module of the name map, and the loss
  backward   the gradient of the loss with respect to each of those inputs and outputs (a module's input: the
             part that flows through the module)
  grad, exp_avg, exp_avg_sq, param, lr   per trainable tensor: its gradient, AdamW's moments and its value after
             the update; the learning rate (step 0: the trainable tensors before training)
The header metadata holds the arguments, the versions and a SHA-256 of every tensor at step 0. Each value is
copied out of the framework when it is recorded.
--beam_contexts N then runs beam search on the first N contexts: per search step the top scores and candidate
ids (beam/context/step). --isolate RECORD (another framework's trace of the same run) gives every module the
input that RECORD holds and passes RECORD's output on, gives every module's backward pass RECORD's gradient of
its output and passes RECORD's gradient of its input back, and starts every update from RECORD's gradients,
moments and parameters: what still differs is each module's own.
"""
import hashlib
import sys

import jittor as jt
import numpy as np

from common_data.training import batching
from common_data.decoding.beam import BeamBatch, BeamSettings, query_tokens
from common_data.model.checkpoint import load_tensors, save_tensors
from common_data.trace import names
from common_data.trace.start import training_start
from NLG_jittor.src import adapters, beam_search, ops, probe
from NLG_jittor.src.optimizer import adamw_from_args
from NLG_jittor.src.run_info import framework_versions

FRAMEWORK = "jittor"


def build_parser():
    parser = probe.build_parser()
    parser.description = __doc__.split("\n")[0]
    parser.set_defaults(steps=1)
    trace = parser.add_argument_group("trace")
    trace.add_argument("--isolate", default=None, help="feed every module and update the values of this trace")
    trace.add_argument("--float64", action="store_true", help="run in float64 (the reference of the noise floor)")
    trace.add_argument("--beam_contexts", type=int, default=0, help="beam search on the first this many contexts")
    trace.add_argument("--beam", type=int, default=4, help="beam size")
    trace.add_argument("--eval_len", type=int, default=8, help="longest generated continuation")
    return parser


def parse_args(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.steps < 1 or args.beam_contexts < 0 or args.beam < 1 or args.eval_len < 1:
        parser.error("--steps, --beam and --eval_len must be positive, --beam_contexts not negative")
    if args.switch_step is not None:
        parser.error("--switch_step: the trace does not switch JELLY adapters")
    if args.float64:
        parser.error("--float64: the float64 reference runs in torch (Jittor's CPU matmul takes float32 only)")
    return args


def to_numpy(tensor):
    return ops.numpy(tensor).copy()


def tensor_digest(array):
    """SHA-256 of a tensor's float32 bytes: a float64 run hashes as the float32 run it was cast from."""
    return hashlib.sha256(np.ascontiguousarray(array, dtype=np.float32).tobytes()).hexdigest()


class Substitute(jt.Function):
    """RECORD's value in the forward pass; in the backward pass RECORD's gradient, whatever the output's."""

    def execute(self, tensor, value, gradient):
        self.gradient = gradient
        return value.clone()

    def grad(self, output_gradient):
        return self.gradient, None, None


class Recorder:
    """Forward hooks on the modules of the name map: they record every input and output and put a new tensor in
    its place, whose gradient is recorded; with `isolate` (arrays of another trace) that tensor holds the other
    trace's value and passes the other trace's gradient back."""

    def __init__(self, model, isolate=None):
        self.step, self.arrays, self.points, self.isolate, self.handles = 0, {}, {}, isolate, []
        modules = dict(model.named_modules())
        for name in names.module_order(model.config.n_layer)[:-1]:
            path = names.module_path(FRAMEWORK, name)
            if path not in modules:
                raise KeyError(f"the name map's module {path} is not in the model")
            modules[path].register_pre_forward_hook(self.input_hook(name))
            modules[path].register_forward_hook(self.output_hook(name))
            self.handles.append(modules[path])

    def close(self):
        for module in self.handles:
            module.remove_pre_forward_hook()
            module.remove_forward_hook()

    def isolated(self, phase, name, item, like):
        return ops.constant_like(like, self.isolate[names.key(self.step, phase, name, item)])

    def point(self, name, item, tensor):
        """Record `tensor` and return the tensor that takes its place. A floating tensor gets a new one, so that
        the gradient recorded at a module's input is the part that flows through the module (Jittor has the
        gradient of every floating variable, trained or not)."""
        record_key = names.key(self.step, "forward", name, item)
        self.arrays[record_key] = to_numpy(tensor)
        if not tensor.dtype.is_float():
            return tensor
        if self.isolate is None:
            placed = tensor.clone()
        else:
            placed = Substitute.apply(tensor, self.isolated("forward", name, item, tensor),
                                      self.isolated("backward", name, item, tensor))
        self.points[record_key] = placed
        return placed

    def input_hook(self, name):
        def hook(module, args, kwargs=None):
            return (self.point(name, "in", args[0]), *args[1:]), kwargs or {}
        return hook

    def output_hook(self, name):
        def hook(module, args, output, kwargs=None):
            hidden = output[0] if isinstance(output, tuple) else output
            hidden = self.point(name, "out", hidden)
            return (hidden, *output[1:]) if isinstance(output, tuple) else hidden
        return hook

    def take_points(self):
        points, self.points = self.points, {}
        return points


def gradients(optimizer, params):
    by_id = {id(param): name for name, param in params.items()}
    return {by_id[id(param)]: to_numpy(grad) for group in optimizer.param_groups
            for param, grad in ops.gradients(group) if id(param) in by_id}


def load_isolated_update(optimizer, params, isolate, step):
    """The parameters and moments after step - 1 of the other trace (its step 0: the parameters only)."""
    for name, param in params.items():
        ops.assign(param, isolate[names.key(step - 1, "param", name)])
    if step > 1:
        arrays = {f"{moment}.{name}": isolate[names.key(step - 1, moment, name)]
                  for name in params for moment in ("exp_avg", "exp_avg_sq")}
        optimizer.load_state_arrays(params, arrays, {name: step - 1 for name in params})


def traced_step(model, optimizer, params, batch, lr, args, recorder):
    """One training step as probe.py's train_step makes it, recorded."""
    step, record = recorder.step, recorder.arrays
    for field in ("input_ids", "targets", "loss_mask"):
        record[names.key(step, "batch", field)] = getattr(batch, field)
    if recorder.isolate is not None:
        load_isolated_update(optimizer, params, recorder.isolate, step)
    loss = probe.batch_loss(model, batch, args.label_smooth)
    record[names.key(step, "forward", names.LOSS, "out")] = to_numpy(loss).reshape(1)
    points = recorder.take_points()
    for record_key, grad in zip(points, jt.grad(loss, list(points.values()), retain_graph=True)):
        record[record_key.replace("/forward/", "/backward/", 1)] = to_numpy(grad)
    optimizer.backward(loss)
    if args.clip > 0:
        optimizer.clip_grad_norm(args.clip)
    for name, grad in gradients(optimizer, params).items():
        record[names.key(step, "grad", name)] = grad
    if recorder.isolate is not None:
        ops.set_gradients(optimizer, params, {name: recorder.isolate[names.key(step, "grad", name)] for name in params})
    optimizer.set_lr(lr)
    optimizer.step()
    record[names.key(step, "lr", "lr")] = np.array([lr])
    moments, _ = optimizer.state_arrays(params)
    for name, param in params.items():
        for moment in ("exp_avg", "exp_avg_sq"):
            record[names.key(step, moment, name)] = moments[f"{moment}.{name}"]
        record[names.key(step, "param", name)] = to_numpy(param)


def record_training(model, optimizer, batches, args, start, isolate=None):
    """The records of args.steps traced training steps on `batches` (arrays by key)."""
    params = probe.trainable(model)
    recorder = Recorder(model, isolate)
    for name, param in params.items():
        recorder.arrays[names.key(0, "param", name)] = to_numpy(param)
    for step, batch in zip(range(1, args.steps + 1), batches):
        recorder.step = step
        lr = probe.update_rate(step - 1, args, start)
        traced_step(model, optimizer, params, batch, lr, args, recorder)
    recorder.close()
    return recorder.arrays


def record_beam(model, contexts, args):
    """Per search step the top scores and candidate ids of a beam search from each context, alone."""
    settings = BeamSettings(beam=args.beam, eval_len=args.eval_len)
    record, steps = {}, []
    chosen = BeamBatch.best_candidates

    def recording(batch, *inputs):
        top = chosen(batch, *inputs)
        steps.append(top)
        return top

    model.eval()
    BeamBatch.best_candidates = recording
    try:
        for index, context in enumerate(contexts):
            steps.clear()
            beam_search.search_batch(model, [query_tokens(context, args.seq_len, args.eval_len)], settings,
                                     "cpu")
            for step, (top_scores, top_ids) in enumerate(steps, start=1):
                record[names.key(step, "beam", str(index), "scores")] = top_scores[0]
                record[names.key(step, "beam", str(index), "ids")] = top_ids[0]
    finally:
        BeamBatch.best_candidates = chosen
    return record


def make_model(args, start):
    return probe.load_model(args, start)


def trace(model, optimizer, args, start, isolate=None):
    """The arrays and metadata of a trace of `model` and `optimizer` (which may be planted ones)."""
    arrays = model.to_arrays()
    metadata = {"framework": FRAMEWORK, "format": names.FORMAT, "args": vars(args), "versions": framework_versions(),
                "dtype": "float64" if args.float64 else "float32", "n_layer": model.config.n_layer,
                "adapter_mode": adapters.adapter_mode(model), "isolated": isolate is not None,
                "step0_sha256": {name: tensor_digest(array) for name, array in sorted(arrays.items())}}
    pairs = start.rows(batching.load_encoded(args.data), args.rows)
    examples = batching.make_examples(pairs, args.seq_len)
    config = batching.BatchConfig(args.batch_size, args.seq_len, args.pad_multiple)
    record = record_training(model, optimizer, probe.training_batches(examples, config, args.random_seed, start), args,
                             start, isolate)
    if args.beam_contexts:
        record.update(record_beam(model, [context for context, _ in pairs[:args.beam_contexts]], args))
    return record, metadata


def main(argv=None):
    args = parse_args(argv)
    jt.flags.use_cuda = jt.has_cuda
    jt.set_global_seed(args.random_seed)
    start = training_start(args.trainer_checkpoint)
    model = make_model(args, start)
    optimizer = adamw_from_args(probe.trainable(model), args)
    probe.resume_optimizer(optimizer, probe.trainable(model), start)
    isolate = load_tensors(args.isolate)[0] if args.isolate else None
    record, metadata = trace(model, optimizer, args, start, isolate)
    save_tensors(args.output, record, metadata)
    return 0


if __name__ == "__main__":
    sys.exit(main())
