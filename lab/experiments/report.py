"""What the experiments end with: their rows written as JSON (with what produced them) and printed as a markdown
table, ready for docs/benchmarks.md."""

import json
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple


def write_report(output: Path, rows: List[dict], context: Dict, columns: Sequence[Tuple[str, Callable[[dict], str]]]
                 ) -> None:
    """Write `{"rows": rows, **context}` to `output` (its folder created) and print `rows` as a markdown table with
    `columns`: (header, the cell's text from a row)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({"rows": rows, **context}, indent=2) + "\n")
    print("| " + " | ".join(header for header, _ in columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(cell(row)) for _, cell in columns) + " |")
