"""Plain-text tables for terminal summaries."""

__all__ = ["format_table"]


def format_table(header, rows):
    """Left-aligned columns separated by two spaces, with a rule under the header."""
    cells = [[str(value) for value in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(value.ljust(width) for value, width in zip(row, widths)).rstrip()
             for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)
