"""The `verdict:` section of a recipe: which segments of a run `python -m alignment verify` replays in the other
framework, and how far the free-running gap may stand from the float32 envelope. Its keys are the flags of
`python -m alignment verify` without '--'."""
import argparse

DEFAULT_SEGMENT_STEPS = 20
DEFAULT_ENVELOPE_FACTOR = 4.0


def step_list(text):
    """'0,20,300' -> (0, 20, 300)."""
    try:
        return tuple(int(item) for item in text.split(",") if item.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected steps separated by commas, got {text!r}") from None


def add_verdict_arguments(parser, defaults=True):
    """The flags; defaults=False leaves them None, so that a value taken from elsewhere can fill what was not given."""
    group = parser.add_argument_group("segments and envelope (a recipe's verdict: section)")
    group.add_argument("--segment_steps", type=int, default=DEFAULT_SEGMENT_STEPS if defaults else None, metavar="K",
                       help=f"steps of each replayed segment (default: {DEFAULT_SEGMENT_STEPS})")
    group.add_argument("--segments", type=step_list, default=None, metavar="STEP,STEP,...",
                       help="the steps whose saved state each segment starts from: 0 is the runs' shared initial "
                            "state (no replay), any other a trainer.STEP checkpoint of the run (default: 0, the end "
                            "of warm-up, the middle and the last K steps, at the run's saves)")
    group.add_argument("--segment_every", type=int, default=None, metavar="N",
                       help="without --segments: a segment from the save at every N steps and the last")
    group.add_argument("--envelope_factor", type=float, default=DEFAULT_ENVELOPE_FACTOR if defaults else None,
                       metavar="F", help="the free-running gap may stand at most F times above the envelope "
                                         f"(default: {DEFAULT_ENVELOPE_FACTOR:g})")
    return group


def build_parser():
    parser = argparse.ArgumentParser(prog="verdict", add_help=False)
    add_verdict_arguments(parser)
    return parser


def check_segments(segments, segment_steps, save_interval, max_step, where):
    """A ValueError naming `where` unless every segment starts at a saved step and ends by max_step."""
    if segment_steps < 1:
        raise ValueError(f"{where}: segment_steps must be at least 1, got {segment_steps}")
    for start in segments:
        if start < 0 or start % save_interval or start + segment_steps > max_step:
            raise ValueError(f"{where}: segment {start} must start at 0 or at a multiple of save_interval "
                             f"{save_interval} and end by max_step {max_step} ({segment_steps} steps)")


def default_segments(segment_steps, save_interval, warmup_step, max_step, every=None):
    """0, the save at or before the end of warm-up, then the save at or before every `every` steps (without it, the
    middle), and the last segment, each starting at a saved step."""
    def saved_at_or_before(step):
        return max(0, step // save_interval * save_interval)
    last = saved_at_or_before(max_step - segment_steps)
    marks = range(every, max_step, every) if every else [max_step // 2]
    starts = {0, saved_at_or_before(warmup_step), last, *(saved_at_or_before(mark) for mark in marks)}
    return sorted(start for start in starts if start + segment_steps <= max_step)
