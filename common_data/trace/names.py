"""The trace's name map: which modules of GPT2LMModel are recorded, in which order, under which trace names.

Both recorders look every module up by its path in the model and stop when one is missing; nothing is matched
by shape. The two models are mirror images, so the paths are the same in both frameworks and the map from a
trace name to a framework's module path is the identity for both; FRAMEWORK_PATHS is where a port whose paths
differ would say so.
"""
ROOT = "model"
LOSS = "loss"
BLOCK_MODULES = ("ln_1", "attn.c_attn", "attn.c_proj", "attn", "ln_2", "mlp.c_fc", "mlp.c_proj", "mlp")
FRAMEWORK_PATHS = {"torch": {}, "jittor": {}}
FORMAT = 2  # 2: the gradient at a module's input is the part that flows through the module


def module_order(n_layer):
    """Trace names in the order their forward passes end (children before their parent); the loss last."""
    names = ["wte", "wpe"]
    for layer in range(n_layer):
        names += [f"h.{layer}.{module}" for module in BLOCK_MODULES] + [f"h.{layer}"]
    return [*names, "ln_f", LOSS]


def start_order(n_layer):
    """Trace names in the order their forward passes start (a parent before its children)."""
    names = ["wte", "wpe"]
    for layer in range(n_layer):
        block = f"h.{layer}"
        names += [block, f"{block}.ln_1", f"{block}.attn", f"{block}.attn.c_attn", f"{block}.attn.c_proj",
                  f"{block}.ln_2", f"{block}.mlp", f"{block}.mlp.c_fc", f"{block}.mlp.c_proj"]
    return [*names, "ln_f", LOSS]


def parent(name):
    """The module whose own code runs around `name` (the model for top-level modules and the loss)."""
    if name.startswith("h.") and name.count(".") > 1:
        prefix = name.rsplit(".", 1)[0]
        return prefix if prefix.count(".") >= 1 else ROOT
    return ROOT


def children(name, n_layer):
    return [child for child in module_order(n_layer) if parent(child) == name]


def module_path(framework, name):
    """The path of trace name `name` in that framework's model (named_modules)."""
    return FRAMEWORK_PATHS[framework].get(name, name)


def parameter_module(parameter):
    """The trace name of the module that owns a parameter (checkpoint name), e.g. h.0.attn.c_attn.lora_A.q."""
    for suffix in (".lora_A.", ".lora_B."):
        if suffix in parameter:
            return parameter.split(suffix)[0]
    return parameter.rsplit(".", 1)[0]


def key(step, phase, name, item=""):
    """A record's key: step (0 = before training), phase (batch, forward, backward, grad, exp_avg, exp_avg_sq,
    param, lr, beam), a trace or parameter name and, for modules, 'in' or 'out'."""
    return "/".join(str(part) for part in (step, phase, name, item) if part != "")


def split_key(record_key):
    """(step, phase, name, item) of a key written by key()."""
    parts = record_key.split("/")
    return int(parts[0]), parts[1], parts[2] if len(parts) > 2 else "", parts[3] if len(parts) > 3 else ""
