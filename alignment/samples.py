"""A few test inputs with both frameworks' outputs and a reference side by side, and how many outputs name the
record's first entity: what the scores stand for."""
from pathlib import Path

import pandas as pd

from alignment.compare import read_lines
from alignment.render import Paragraph, Section, Subheading, Table
from common_data.decoding.decode import reference_groups, tokenize_words

SAMPLE_COUNT = 5
SIDES = ("PyTorch", "Jittor")
PLACEHOLDER = "[TABLECONTEXT]"  # DART's stand-in subject for the table a triple comes from


def decoded_outputs(test_input, torch_pred, jittor_pred):
    """({context: [references]} of the formatted test file in order, {side: outputs}), the outputs one line per
    distinct context as the decoded files hold them."""
    _, groups = reference_groups(test_input)
    outputs = dict(zip(SIDES, (read_lines(torch_pred), read_lines(jittor_pred))))
    for side, lines in outputs.items():
        if len(lines) != len(groups):
            raise ValueError(f"{side} outputs: {len(lines)} lines for the {len(groups)} contexts of {test_input}")
    return groups, outputs


def sample_table(groups, outputs, count=SAMPLE_COUNT):
    """`count` contexts spread evenly over the test set (the i * n // count-th of its n distinct contexts), each with
    the two outputs and its first reference."""
    contexts = list(groups)
    rows = []
    for index in sorted({number * len(contexts) // count for number in range(count)}):
        row = {"#": str(index + 1), "input": contexts[index]}
        row.update((side, lines[index]) for side, lines in outputs.items())
        rows.append({**row, "reference": groups[contexts[index]][0]})
    return pd.DataFrame(rows)


def first_entity(context):
    """The record's first entity: E2E's first value (`name : The Vaults | ...`), else the subject of the first
    `subject : property : object` triple (its object where the subject is DART's [TABLECONTEXT]), underscores as
    spaces."""
    parts = context.split(" | ")[0].split(" : ")
    entity = parts[1] if len(parts) == 2 else parts[2] if parts[0] == PLACEHOLDER else parts[0]
    return entity.replace("_", " ").strip().strip('"')


def names(output, entity):
    """Whether the output holds the entity's words in order (case and tokenisation aside)."""
    def words(text):
        return f" {tokenize_words(text.lower())} "

    return words(entity) in words(output)


def naming_share(groups, lines):
    entities = [first_entity(context) for context in groups]
    return sum(names(line, entity) for line, entity in zip(lines, entities)), len(entities)


def samples_section(results):
    """Per dataset, the share of outputs naming the first entity and sample_table, or what is missing."""
    blocks = [Paragraph(f"{SAMPLE_COUNT} test inputs per dataset, spread evenly over the test set, with both "
                        "frameworks' beam outputs (as scored) and the first reference; above them, how many outputs "
                        "name the record's first entity (E2E: its name; WebNLG and DART: the subject of the first "
                        "triple, underscores as spaces), word for word.")]
    for result in results:
        blocks.append(Subheading(result.dataset))
        paths = {"test input": result.inputs.test_input, "PyTorch outputs": result.inputs.torch_pred,
                 "Jittor outputs": result.inputs.jittor_pred}
        missing = [f"{name}: not given" if path is None else f"{name}: `{path}` does not exist"
                   for name, path in paths.items() if path is None or not Path(path).is_file()]
        if missing:
            blocks.append(Paragraph("No samples: " + "; ".join(missing) + "."))
            continue
        groups, outputs = decoded_outputs(*paths.values())
        shares = []
        for side, lines in outputs.items():
            named, total = naming_share(groups, lines)
            shares.append(f"{side} {named}/{total} ({named / total:.1%})")
        blocks.append(Paragraph("Outputs naming the first entity: " + ", ".join(shares) + "."))
        blocks.append(Table(sample_table(groups, outputs)))
    return Section("Samples", blocks)
