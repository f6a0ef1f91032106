"""The Java scorers that pycocoevalcap ships: METEOR 1.5 (meteor-1.5.jar with its paraphrase table) and
Stanford's PTBTokenizer. Both need `java` on PATH."""
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pycocoevalcap.meteor.meteor as coco_meteor

from .errors import EvalError

METEOR_JAR = Path(coco_meteor.__file__).with_name(coco_meteor.METEOR_JAR)
_FINAL_SCORE = re.compile(r"^Final score:\s+(\S+)\s*$", re.MULTILINE)


def require_java():
    if shutil.which("java") is None:
        raise EvalError("METEOR and the PTB tokenizer run on Java, but no `java` is on PATH: "
                        "install a Java runtime (e.g. `apt-get install default-jre-headless`)")


def meteor_on_files(hypotheses, references, num_refs):
    """METEOR as GenerationEval runs it: `java -Xmx2G -jar meteor-1.5.jar HYP REF -l en -norm -r N`.

    hypotheses: one line each; references: num_refs lines per hypothesis, in order ('' for a missing one).
    Every line ends in a newline: with GenerationEval's '\\n'.join an empty last line would be lost to Java.
    """
    with tempfile.TemporaryDirectory(prefix="nlg-eval-meteor-") as folder:
        hypothesis_file, reference_file = Path(folder, "hypothesis"), Path(folder, "reference")
        hypothesis_file.write_text("".join(f"{line}\n" for line in hypotheses), encoding="utf-8")
        reference_file.write_text("".join(f"{line}\n" for line in references), encoding="utf-8")
        command = ["java", "-Xmx2G", "-jar", str(METEOR_JAR), str(hypothesis_file), str(reference_file),
                   "-l", "en", "-norm", "-r", str(num_refs)]
        result = subprocess.run(command, capture_output=True, text=True, encoding="utf-8")
    match = _FINAL_SCORE.search(result.stdout)
    if result.returncode != 0 or match is None:
        raise EvalError(f"METEOR (java -jar {METEOR_JAR.name}) failed with exit code {result.returncode}: "
                        f"{result.stderr.strip()[-1000:]}")
    return float(match.group(1))
