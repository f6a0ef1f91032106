"""JSON Lines files: one JSON object per line, read with line numbers in errors, written atomically."""
import json

from common_data.util.atomic import atomic_open
from common_data.util.errors import DataFormatError


def read_jsonl(path, required_keys=()):
    """All objects of a JSONL file (object i is on line i + 1); a bad line or a missing key raises
    DataFormatError naming the line."""
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataFormatError(path, f"line {number}", f"malformed JSON ({error.msg})") from None
            if not isinstance(row, dict):
                raise DataFormatError(path, f"line {number}", "expected a JSON object")
            missing = [key for key in required_keys if key not in row]
            if missing:
                raise DataFormatError(path, f"line {number}", f"missing key(s) {', '.join(missing)}")
            rows.append(row)
    if not rows:
        raise DataFormatError(path, "line 1", "no rows (empty file)")
    return rows


def write_jsonl(path, rows, ensure_ascii=False):
    """Write one object per line, `json.dumps` spacing, keys in the rows' own order."""
    with atomic_open(path, "w") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=ensure_ascii) + "\n")
