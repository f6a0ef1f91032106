"""`python -m alignment report ...` (our run folders), `python -m alignment verify ...` (replayed segments and the
float32 envelope behind a verdict), `python -m alignment legacy ...` (two console logs),
`python -m alignment trace ...` (where two runs part, module by module) and `python -m alignment methods ...`
(adapter methods side by side, `make compare`)."""
import argparse
import json
import sys
from pathlib import Path

from alignment import replay
from alignment.compare import DEFAULT_TOLERANCE
from alignment.methods import DESCRIPTIONS, build_methods_report
from alignment.report import DatasetInputs, build_report
from alignment.runs import read_run
from alignment.summary import verdict_sentence
from alignment.trace_report import MANIFEST, run_trace
from alignment.verdict import judge, read_envelope
from common_data.cli import verdict_args
from common_data.cli.command import add_debug_argument, command
from common_data.cli.config_file import load_file, read_config
from common_data.cli.verdict_args import DEFAULT_ENVELOPE_FACTOR, DEFAULT_SEGMENT_STEPS, add_verdict_arguments

# per-dataset options of `report`, by their DatasetInputs field
PER_DATASET = {"torch": "torch_run", "jittor": "jittor_run", "torch_pred": "torch_pred",
               "jittor_pred": "jittor_pred", "torch_scores": "torch_scores", "jittor_scores": "jittor_scores",
               "envelope": "envelope", "test_input": "test_input"}
NOT_GIVEN = "-"
LEGACY_TOLERANCE = 0.01  # console logs print losses with 2 decimals


def add_output_arguments(parser, default_md, default_prefix):
    parser.add_argument("--out-md", type=Path, default=Path(default_md), metavar="FILE",
                        help="the Markdown report (default: %(default)s)")
    parser.add_argument("--out-html", type=Path, default=None, metavar="FILE",
                        help="the self-contained HTML report, figures embedded (default: --out-md with .html)")
    parser.add_argument("--figures", type=Path, default=Path("figure"), metavar="DIR",
                        help="folder for the PNG figures (default: %(default)s)")
    parser.add_argument("--figure-prefix", default=default_prefix, metavar="TEXT",
                        help="prefix of the figure file names (default: '%(default)s')")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m alignment",
        description="Compare a PyTorch and a Jittor run: matched loss curves, generation metrics, identical beam "
                    "outputs, peak memory and runtime, and a verdict, as PNG figures plus a Markdown and an HTML "
                    "report.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{report,verify,legacy,trace,methods}")

    report = commands.add_parser(
        "report",
        help="report on run folders written by our gpt2_ft.py (metrics.jsonl + run.json)",
        description="Report on PyTorch and Jittor run folders (metrics.jsonl + run.json, and run.<step>.json "
                    "records of later steps such as beam search). A console log file is accepted as a run too.",
        epilog="Several datasets in one report: repeat the group, e.g. --dataset e2e --torch A --jittor B "
               "--dataset dart --torch C --jittor D. Each per-dataset option is given once per dataset or not at "
               f"all; '{NOT_GIVEN}' stands for 'not given' for one dataset.")
    report.add_argument("--dataset", action="append", metavar="NAME",
                        help="dataset of each group: e2e, webnlg or dart; picks the metrics (default: e2e)")
    report.add_argument("--torch", action="append", required=True, metavar="RUN",
                        help="PyTorch run folder (or console log)")
    report.add_argument("--jittor", action="append", required=True, metavar="RUN",
                        help="Jittor run folder (or console log)")
    report.add_argument("--torch-pred", action="append", metavar="FILE",
                        help="PyTorch decoded beam outputs, one per line")
    report.add_argument("--jittor-pred", action="append", metavar="FILE", help="Jittor decoded beam outputs")
    report.add_argument("--torch-scores", action="append", metavar="JSON", help="`nlg-eval --json` output, PyTorch")
    report.add_argument("--jittor-scores", action="append", metavar="JSON", help="`nlg-eval --json` output, Jittor")
    report.add_argument("--envelope", action="append", metavar="JSON",
                        help="the float32 envelope of the runs' recipe (`python -m alignment verify` writes it)")
    report.add_argument("--test-input", action="append", metavar="JSONL",
                        help="the formatted test file the outputs follow (common_data/<dataset>/sampled/"
                             "test_formatted.jsonl): five inputs with both outputs and a reference in the report")
    report.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE, metavar="NATS",
                        help="largest |Δ loss| (nats per token) at a matched step that still counts as step-exact "
                             "(default: %(default)g)")
    report.add_argument("--envelope-factor", type=float, default=DEFAULT_ENVELOPE_FACTOR, metavar="F",
                        help="how far above the float32 envelope the free runs' gap may stand (default: %(default)g)")
    report.add_argument("--trace", type=Path, metavar="DIR",
                        help="a --work-dir of `python -m alignment trace`: its verdict, largest errors and figure "
                             "become the section 'Layer-by-layer trace'")
    add_output_arguments(report, "log/alignment_report.md", "")

    verify = commands.add_parser(
        "verify",
        help="the evidence of a verdict: replay segments of a run pair and measure the float32 envelope",
        description="When the free runs are not step-exact, or --segments asks for them: replay segments of the "
                    "PyTorch run in Jittor from PyTorch's saved trainer states (into JITTOR/replays/from_torch.STEP; "
                    "--reverse: PyTorch from Jittor's too) and measure the float32 envelope unless a cached one fits "
                    "(one more PyTorch run, every product summed in another order, into TORCH/envelope); then "
                    "print the verdict. Settings come from the verdict: section of the runs' recipe (their --config), flags "
                    "given here win.")
    verify.add_argument("--torch", type=Path, required=True, metavar="RUN", help="the PyTorch run folder")
    verify.add_argument("--jittor", type=Path, required=True, metavar="RUN", help="the Jittor run folder")
    verify.add_argument("--envelope", type=Path, metavar="JSON",
                        help="the envelope file: kept when it was measured for a run of these arguments, else "
                             "measured and written there (default: log/envelopes/RECIPE.json for a run of a recipe, "
                             "else TORCH/envelope.json)")
    verify.add_argument("--reverse", action="store_true", help="also replay PyTorch from Jittor's saved states")
    verify.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE, metavar="NATS",
                        help="largest |Δ loss| at a step that still counts as step-exact (default: %(default)g)")
    add_verdict_arguments(verify, defaults=False)

    legacy = commands.add_parser(
        "legacy",
        help="overlay and verdict of two console logs in microsoft/LoRA's format",
        description="Read two console logs in microsoft/LoRA's gpt2_ft.py format (e.g. of an earlier port), "
                    "overlay their losses and print the verdict; writes the same report as `report`.")
    legacy.add_argument("torch_log", type=Path, help="the PyTorch console log")
    legacy.add_argument("jittor_log", type=Path, help="the Jittor console log")
    legacy.add_argument("--dataset", default="e2e", metavar="NAME",
                        help="dataset the logs trained on (default: %(default)s)")
    legacy.add_argument("--torch-pred", type=Path, metavar="FILE", help="PyTorch decoded beam outputs, one per line")
    legacy.add_argument("--jittor-pred", type=Path, metavar="FILE", help="Jittor decoded beam outputs")
    legacy.add_argument("--tolerance", type=float, default=LEGACY_TOLERANCE, metavar="NATS",
                        help="largest |Δ loss| at a matched step that still counts as aligned "
                             "(default: %(default)g: console logs print losses with 2 decimals)")
    add_output_arguments(legacy, "log/alignment_legacy_report.md", "legacy_")

    methods = commands.add_parser(
        "methods",
        help="adapter methods side by side, each in PyTorch and Jittor (make compare)",
        description="Compare adapter methods trained with one budget of steps in both frameworks: trainable "
                    "parameters, time per step, peak memory, validation loss, E2E metrics, Jittor minus PyTorch. "
                    "Reads RUNS/torch_<method> and RUNS/jittor_<method> (run folders with scores.json and "
                    "pred.txt, as scripts/compare.sh writes them).")
    methods.add_argument("--runs", type=Path, default=Path("runs/compare"), metavar="DIR",
                         help="folder of the run folders (default: %(default)s)")
    methods.add_argument("--methods", nargs="+", default=list(DESCRIPTIONS), metavar="NAME",
                         help="methods in the order of the report (default: %(default)s)")
    methods.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE, metavar="NATS",
                         help="largest |Δ loss| at a logged step that still counts as aligned (default: %(default)g)")
    add_output_arguments(methods, "log/methods_report.md", "")

    trace = commands.add_parser(
        "trace",
        help="run training steps in both frameworks and find the first module where they part",
        description="Run NLG_pytorch/src/trace_hooks.py (float32 and float64) and NLG_jittor/src/trace_hooks.py, each "
                    "in its environment, on the same model, adapters and batches; check that their inputs agree, then "
                    "compare every module's output and gradient, every update, and beam search, and name the first "
                    "module over the tolerance.",
        epilog="Everything after -- goes to both recorders (probe.py's flags: --data, --model_card, --init_checkpoint, "
               "--adapter_checkpoint, --random_seed, --adapter, --lora_dim, --rows, --batch_size, --seq_len, --steps, "
               "--lr, ..., and --beam_contexts N). Example: python -m alignment trace -- --data "
               "common_data/e2e/encoded/train.jsonl --model_card gpt2.tiny --lora_dim 4 --steps 2 --beam_contexts 2")
    trace.add_argument("--work-dir", type=Path, default=Path("runs/trace"), metavar="DIR",
                       help="folder for the traces (default: %(default)s)")
    trace.add_argument("--repeat", action="store_true",
                       help="run each framework twice and count its run-to-run differences into the noise floor")
    trace.add_argument("--isolate", action="store_true",
                       help="also run Jittor with every module fed PyTorch's inputs, every update PyTorch's gradients")
    add_output_arguments(trace, "log/trace_report.md", "trace_")
    trace.add_argument("recorder_args", nargs=argparse.REMAINDER, metavar="-- RECORDER_FLAGS",
                       help="the recorders' flags")
    add_debug_argument(report, verify, legacy, methods, trace)
    return parser


def grouped_inputs(parser, args):
    """One DatasetInputs per --dataset, from the repeated per-dataset options."""
    names = args.dataset or (["e2e"] if len(args.torch) == 1 else None)
    if names is None:
        parser.error(f"--torch is given {len(args.torch)} times: name the dataset of each with --dataset")
    fields = {}
    for option, field in PER_DATASET.items():
        values = getattr(args, option) or [NOT_GIVEN] * len(names)
        if len(values) != len(names):
            parser.error(f"--{option.replace('_', '-')} is given {len(values)} times for {len(names)} datasets: "
                         f"give it once per --dataset ('{NOT_GIVEN}' for none) or not at all")
        fields[field] = [None if value == NOT_GIVEN else Path(value) for value in values]
    return [DatasetInputs(name, **{field: values[index] for field, values in fields.items()})
            for index, name in enumerate(names)]


def trace_main(parser, args):
    recorder_args = args.recorder_args[1:] if args.recorder_args[:1] == ["--"] else args.recorder_args
    if not recorder_args:
        parser.error("trace: give the recorders' flags after --, at least --data FILE")
    out_html = args.out_html or args.out_md.with_suffix(".html")
    comparison = run_trace(recorder_args, args.work_dir, args.out_md, out_html, args.figures, args.repeat,
                           args.isolate, args.figure_prefix)
    for problem in comparison.problems:
        print(f"pre-flight: {problem}", file=sys.stderr)
    for finding in comparison.found.findings:
        print(finding.sentence().replace("**", ""))
    if not comparison.problems and not comparison.found.findings:
        print("no module over the tolerance")
    seconds = ", ".join(f"{label} {trace.seconds:.1f} s" for label, trace in comparison.traces.items())
    print(f"traces: {seconds}; report: {args.out_md}, {out_html}")
    return 1 if comparison.problems else 0


def verify_settings(args, run_args, max_step):
    """segment_steps, segments and envelope_factor: the flags given, else the recipe's verdict: section, else the
    defaults (the default segments at the run's saves)."""
    recipe = {}
    if run_args.get("config") and Path(run_args["config"]).suffix in (".yaml", ".yml"):
        content = load_file(run_args["config"])
        if isinstance(content, dict) and "verdict" in content:
            recipe = read_config(verdict_args.build_parser(), run_args["config"], "verdict")
    settings = {key: getattr(args, key) if getattr(args, key) is not None else recipe.get(key, default)
                for key, default in (("segment_steps", DEFAULT_SEGMENT_STEPS), ("segments", None),
                                     ("segment_every", None), ("envelope_factor", DEFAULT_ENVELOPE_FACTOR))}
    if args.segments is None and settings["segments"] is not None:
        try:
            verdict_args.check_segments(settings["segments"], settings["segment_steps"], run_args["save_interval"],
                                        max_step, "verify")
        except ValueError as error:
            # the run changed the recipe's steps or saves (make compare's MAX_STEP, say): its segments do not apply
            print(f"{run_args['config']}: the verdict section's segments do not fit this run ({error}); replaying the "
                  "default segments at the run's saves", file=sys.stderr)
            settings["segments"] = None
    if settings["segments"] is None:
        settings["segments"] = verdict_args.default_segments(
            settings["segment_steps"], run_args["save_interval"], run_args["warmup_step"], max_step,
            settings["segment_every"])
    verdict_args.check_segments(settings["segments"], settings["segment_steps"], run_args["save_interval"], max_step,
                                "verify")
    return settings


def verify_main(args):
    torch_run = read_run(args.torch)
    torch_args = replay.run_args(torch_run)
    settings = verify_settings(args, torch_args, torch_run.records["run"].get("max_step"))
    comparison = judge(torch_run, read_run(args.jittor), args.tolerance, settings["segment_steps"])
    if comparison.status in ("incomplete", "not comparable") or (comparison.status == "step-exact"
                                                                 and args.segments is None):
        print(f"{args.jittor}: {comparison.status} — {comparison.verdict.reason} (nothing to replay)")
        return 0
    runs = {"torch": args.torch, "jittor": args.jittor}
    for start in (start for start in settings["segments"] if start > 0):
        for source in ("torch", "jittor") if args.reverse else ("torch",):
            replaying = replay.OTHER[source]
            print(f"replaying steps {start + 1}-{start + settings['segment_steps']} in {replaying} from {source}'s "
                  f"step {start}", file=sys.stderr, flush=True)
            replay.replay_segment(runs[source], source, runs[replaying], start, settings["segment_steps"])
    envelope_path = args.envelope or replay.default_envelope_path(torch_args, args.torch)
    if comparison.status != "step-exact" and not replay.envelope_matches(envelope_path, torch_args):
        print("measuring the float32 envelope: PyTorch again, every product summed in another order -> "
              f"{envelope_path}",
              file=sys.stderr, flush=True)
        replay.measure_envelope(args.torch, envelope_path)
    envelope = read_envelope(envelope_path) if Path(envelope_path).is_file() else None
    comparison = judge(read_run(args.torch), read_run(args.jittor), args.tolerance, settings["segment_steps"],
                       envelope, settings["envelope_factor"])
    print(f"{args.jittor}: {comparison.status} — {comparison.verdict.reason}")
    return 0


def methods_main(args):
    out_html = args.out_html or args.out_md.with_suffix(".html")
    _, deltas = build_methods_report(args.runs, args.methods, args.out_md, out_html, args.figures, args.tolerance,
                                     args.figure_prefix)
    for row in deltas.to_dict("records"):
        print(f"{row['method']}: {row['verdict']}, max |Δ loss| {row['max |Δ loss|']:.2e}, "
              f"identical beam outputs {row['identical beam outputs']}")
    print(f"report: {args.out_md}, {out_html}; figure in {args.figures}/")
    return 0


def tensorboard_line(datasets):
    """`tensorboard --logdir_spec ...` over the runs' --tensorboard folders (their run.json), or None."""
    specs = []
    for inputs in datasets:
        for side in ("torch", "jittor"):
            record = Path(getattr(inputs, f"{side}_run") or "-") / "run.json"
            if record.is_file():
                folder = json.loads(record.read_text(encoding="utf-8")).get("args", {}).get("tensorboard")
                if folder:
                    specs.append(f"{inputs.dataset}_{side}:{folder}")
    return f"training curves: tensorboard --logdir_spec {','.join(specs)}" if specs else None


@command("python -m alignment")
def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "trace":
        return trace_main(parser, args)
    if args.command == "methods":
        return methods_main(args)
    if args.command == "verify":
        return verify_main(args)
    if args.command == "report":
        datasets = grouped_inputs(parser, args)
        if args.trace is not None and not (args.trace / MANIFEST).exists():
            parser.error(f"--trace {args.trace}: no {MANIFEST} there; give a --work-dir of `python -m alignment trace`")
    else:
        datasets = [DatasetInputs(args.dataset, torch_run=args.torch_log, jittor_run=args.jittor_log,
                                  torch_pred=args.torch_pred, jittor_pred=args.jittor_pred)]
    out_html = args.out_html or args.out_md.with_suffix(".html")
    results = build_report(datasets, args.out_md, out_html, args.figures, args.tolerance, args.figure_prefix,
                           args.trace if args.command == "report" else None,
                           getattr(args, "envelope_factor", DEFAULT_ENVELOPE_FACTOR))
    for result in results:
        print(verdict_sentence(result, emphasis=""))
    print(f"report: {args.out_md}, {out_html}; figures in {args.figures}/")
    if tensorboard_line(datasets):
        print(tensorboard_line(datasets))
    return 0
