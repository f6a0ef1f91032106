"""Write a report, given as sections of blocks, as Markdown and as one self-contained HTML file."""
import base64
import dataclasses
import html
import math
import os
import re
from pathlib import Path

from common_data.util.atomic import atomic_open


@dataclasses.dataclass(frozen=True)
class Paragraph:
    text: str  # may hold `code` and **bold**


@dataclasses.dataclass(frozen=True)
class Bullets:
    items: tuple


@dataclasses.dataclass(frozen=True)
class Table:
    frame: object  # a DataFrame of display strings


@dataclasses.dataclass(frozen=True)
class Image:
    path: Path
    caption: str


@dataclasses.dataclass(frozen=True)
class Subheading:
    text: str


@dataclasses.dataclass
class Section:
    title: str
    blocks: list


def number(value, spec=".6g"):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return format(value, spec)


def markdown_table(frame):
    def row(cells):
        return "| " + " | ".join(" ".join(str(cell).split()).replace("|", "\\|") for cell in cells) + " |"

    lines = [row(frame.columns), row(["---"] * len(frame.columns))]
    return "\n".join(lines + [row(values) for values in frame.itertuples(index=False)])


def markdown_block(block, folder):
    if isinstance(block, Paragraph):
        return block.text
    if isinstance(block, Bullets):
        return "\n".join(f"- {item}" for item in block.items)
    if isinstance(block, Table):
        return markdown_table(block.frame)
    if isinstance(block, Image):
        relative = Path(os.path.relpath(Path(block.path).resolve(), Path(folder).resolve())).as_posix()
        return f"![{block.caption}]({relative})\n\n*{block.caption}*"
    if isinstance(block, Subheading):
        return f"### {block.text}"
    raise TypeError(f"unknown report block {block!r}")


def write_markdown(path, title, sections):
    path = Path(path)
    parts = [f"# {title}"]
    for section in sections:
        parts.append(f"## {section.title}")
        parts.extend(markdown_block(block, path.parent) for block in section.blocks)
    with atomic_open(path) as handle:
        handle.write("\n\n".join(parts) + "\n")


def inline_html(text):
    """Escape `text`, then turn its `code` and **bold** spans into tags."""
    escaped = html.escape(text, quote=False)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", escaped)


def html_block(block):
    if isinstance(block, Paragraph):
        return f"<p>{inline_html(block.text)}</p>"
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{inline_html(item)}</li>" for item in block.items) + "</ul>"
    if isinstance(block, Table):
        return block.frame.to_html(index=False, border=0, escape=True)
    if isinstance(block, Image):
        data = base64.b64encode(Path(block.path).read_bytes()).decode("ascii")
        caption = html.escape(block.caption)
        return (f'<figure><img src="data:image/png;base64,{data}" alt="{caption}">'
                f"<figcaption>{caption}</figcaption></figure>")
    if isinstance(block, Subheading):
        return f"<h3>{html.escape(block.text)}</h3>"
    raise TypeError(f"unknown report block {block!r}")


STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; }
th { background: #f3f3f3; }
code { background: #f3f3f3; padding: 0 0.2em; }
figure { margin: 1em 0; }
img { max-width: 100%; }
figcaption { font-style: italic; color: #555; }
"""


def write_html(path, title, sections):
    parts = [f"<h1>{html.escape(title)}</h1>"]
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        parts.extend(html_block(block) for block in section.blocks)
    document = (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html.escape(title)}'
                f"</title>\n<style>{STYLE}</style>\n</head>\n<body>\n" + "\n".join(parts) + "\n</body>\n</html>\n")
    with atomic_open(path) as handle:
        handle.write(document)
