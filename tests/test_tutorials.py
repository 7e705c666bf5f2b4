"""Every Python block of docs/tutorials.md runs as written (each in a fresh namespace)."""

import re
from pathlib import Path

import pytest

TUTORIALS = Path(__file__).resolve().parents[1] / "docs" / "tutorials.md"
BLOCKS = re.findall(r"```python\n(.*?)```", TUTORIALS.read_text(encoding="utf-8"), flags=re.S)


def test_the_page_has_its_three_tutorials():
    assert len(BLOCKS) == 3


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_tutorial_block_runs(index, capsys):
    exec(compile(BLOCKS[index], f"docs/tutorials.md[{index}]", "exec"), {"__name__": "tutorial"})
    assert capsys.readouterr().out.strip() or index == 1  # the blocks that print, print something
