"""A few test inputs with both frameworks' outputs and a reference side by side: what the scores stand for."""
from pathlib import Path

import pandas as pd

from alignment.compare import read_lines
from alignment.render import Paragraph, Section, Subheading, Table
from common_data.decoding.decode import reference_groups

SAMPLE_COUNT = 5


def sample_table(test_input, torch_pred, jittor_pred, count=SAMPLE_COUNT):
    """`count` contexts of the formatted test file spread evenly over it (the i * n // count-th of its n distinct
    contexts, in the order the decoded outputs follow), each with the two outputs and its first reference."""
    _, groups = reference_groups(test_input)
    outputs = {"PyTorch": read_lines(torch_pred), "Jittor": read_lines(jittor_pred)}
    for side, lines in outputs.items():
        if len(lines) != len(groups):
            raise ValueError(f"{side} outputs: {len(lines)} lines for the {len(groups)} contexts of {test_input}")
    contexts = list(groups)
    rows = []
    for index in sorted({number * len(contexts) // count for number in range(count)}):
        row = {"#": str(index + 1), "input": contexts[index]}
        row.update((side, lines[index]) for side, lines in outputs.items())
        rows.append({**row, "reference": groups[contexts[index]][0]})
    return pd.DataFrame(rows)


def samples_section(results):
    """Per dataset, sample_table of its test input and both outputs, or what is missing."""
    blocks = [Paragraph(f"{SAMPLE_COUNT} test inputs per dataset, spread evenly over the test set, with both "
                        "frameworks' beam outputs (as scored) and the first reference.")]
    for result in results:
        blocks.append(Subheading(result.dataset))
        paths = {"test input": result.inputs.test_input, "PyTorch outputs": result.inputs.torch_pred,
                 "Jittor outputs": result.inputs.jittor_pred}
        missing = [f"{name}: not given" if path is None else f"{name}: `{path}` does not exist"
                   for name, path in paths.items() if path is None or not Path(path).is_file()]
        if missing:
            blocks.append(Paragraph("No samples: " + "; ".join(missing) + "."))
            continue
        blocks.append(Table(sample_table(*paths.values())))
    return Section("Samples", blocks)
