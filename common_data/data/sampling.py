"""Stratified sampling of formatted rows: by type, whole groups at a time, deterministic given a seed.

For each type, its groups are put in a random order and a prefix of them is kept: the groups
before the one that crosses the target ratio x (rows of that type), and the crossing group itself
with the probability that makes the expected row count equal the target (randomized rounding, so
that the many tiny strata of DART do not all round down). So the kept row count of every type is
less than one group (the crossing one) away from its target, every group is kept or dropped whole,
and kept rows stay in file order. A group's type is the type of its first row (in WebNLG train a
few triple sets appear under two categories).
"""
import zlib

import numpy as np
import pandas as pd

SPLITS = ("train", "valid", "test")


def split_rng(seed, dataset, split):
    """The random generator for one split of one dataset: fixed by (seed, dataset, split)."""
    return np.random.default_rng([seed, zlib.crc32(f"{dataset}/{split}".encode())])


def group_types(rows):
    """{group: type of its first row}, groups in order of first appearance."""
    types = {}
    for row in rows:
        types.setdefault(row["group"], row["type"])
    return types


def group_sizes(rows):
    sizes = {}
    for row in rows:
        sizes[row["group"]] = sizes.get(row["group"], 0) + 1
    return sizes


def choose_groups(sizes, ratio, rng):
    """A random prefix of the groups (`sizes`: {group: rows}) with about ratio x their rows, see above."""
    groups = list(sizes)
    order = rng.permutation(len(groups))
    cumulative = np.concatenate([[0], np.cumsum([sizes[groups[i]] for i in order])])
    target = ratio * cumulative[-1]
    count = int(np.searchsorted(cumulative, target, side="right")) - 1  # groups wholly below the target
    if count < len(groups):
        crossing = cumulative[count + 1] - cumulative[count]
        count += int(rng.random() < (target - cumulative[count]) / crossing)
    return {groups[i] for i in order[:count]}


def sample_rows(rows, ratio, rng):
    """Rows of the kept groups, in their original order (see the module docstring)."""
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"ratio must be in (0, 1], got {ratio}")
    types = group_types(rows)
    sizes_by_type = {}
    for group, size in group_sizes(rows).items():
        sizes_by_type.setdefault(types[group], {})[group] = size
    kept = set()
    for row_type in sorted(sizes_by_type):
        kept |= choose_groups(sizes_by_type[row_type], ratio, rng)
    return [row for row in rows if row["group"] in kept]


def type_counts(rows):
    """Rows per type, a row counted under its group's type."""
    types = group_types(rows)
    return pd.Series([types[row["group"]] for row in rows]).value_counts()


def count_table(full, sampled, max_types=20):
    """Rows per type and split, before (full) and after (sampled), as a DataFrame.

    `full` and `sampled` map split names to row lists. Beyond `max_types` types, the smaller ones
    are summed in one row; a last row holds the totals.
    """
    columns = {}
    for split in SPLITS:
        if split in full:
            columns[(split, "full")] = type_counts(full[split])
            columns[(split, "sampled")] = type_counts(sampled[split])
    table = pd.DataFrame(columns).fillna(0).astype(int)
    for stage in ("full", "sampled"):
        table[("total", stage)] = table.xs(stage, axis=1, level=1).sum(axis=1)
    table = table.sort_values(("total", "full"), ascending=False, kind="stable")
    if len(table) > max_types:
        rest = table.iloc[max_types:]
        table = table.iloc[:max_types].copy()
        table.loc[f"({len(rest)} other types)"] = rest.sum()
    table.loc["total"] = table.sum()
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    return table
