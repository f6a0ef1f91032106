"""CPU kernels written once, in C++, for both frameworks: each <name>.h defines a function <name>. Jittor compiles
them into its ops (the header as cpu_header, a call as cpu_src); torch's ops call them in a library that
compiled_library builds, with Jittor's kernel flags, and ctypes loads."""
import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Jittor's flags for its CPU kernels (-Ofast: -O3 with -ffast-math, which lets expf vectorize). The link is a step
# of its own, without them: linked with -Ofast, a library turns on flush-to-zero for the whole process when it loads.
FLAGS = ["-std=c++17", "-Ofast", "-march=native", "-fopenmp", "-fPIC"]
LINK_FLAGS = ["-shared", "-fopenmp"]


def header(name):
    """The C++ source of <name>.h."""
    return (HERE / f"{name}.h").read_text()


def cache_dir():
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nlg-lora-mirror" / "kernels"


def compiled_library(source):
    """The shared library of the C++ file source (which may include this folder's headers), compiled once per
    source, headers, compiler and flags into cache_dir(). Raises CalledProcessError (with the compiler's output)
    or FileNotFoundError (no compiler)."""
    compiler = os.environ.get("CXX", "g++")
    fingerprint = hashlib.sha256()
    for part in [Path(source).read_bytes(), *(path.read_bytes() for path in sorted(HERE.glob("*.h"))),
                 compiler.encode(), " ".join(FLAGS + LINK_FLAGS).encode()]:
        fingerprint.update(part)
    target = cache_dir() / f"{Path(source).stem}-{fingerprint.hexdigest()[:16]}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        built, objects = Path(work) / target.name, Path(work) / "kernels.o"
        for command in ([compiler, *FLAGS, "-I", str(HERE), "-c", str(source), "-o", str(objects)],
                        [compiler, *LINK_FLAGS, str(objects), "-o", str(built)]):
            subprocess.run(command, check=True, capture_output=True, text=True)
        os.replace(built, target)
    return target
