"""The README's examples, found by the paragraph that introduces them, so tests run them as
written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def example_after(sentence: str, language: str = "python") -> str:
    """The first fenced ``language`` block after the text ``sentence``."""
    text = README.read_text()
    start = text.index(sentence)
    block = re.search(rf"```{language}\n(.*?)```", text[start:], re.DOTALL)
    assert block is not None, f"no {language} example after {sentence!r}"
    return block.group(1)
