"""The percent-notebook parser and the export-cell loader."""
from __future__ import annotations

import pickle
import traceback
from pathlib import Path

import jupytext
import pytest

from harness.autograder.loader import NotebookError, clear_cache, load_session, notebook_path, upstream
from harness.autograder.notebook import export_source, read_cells
from harness.paths import tree_dir

NOTEBOOK = '''# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # A title
# text that mentions # %% inside a markdown line is not a cell

# %% tags=["export"]
import math

RAN = []


def exported(x):
    return helper(x) + 1

# %%
raise RuntimeError("a demo cell must never run on import")

# %% tags=["export"]
def helper(x):
    RAN.append(x)
    return math.floor(x)


def broken():
    return 1 / 0
'''


@pytest.fixture
def tree(tmp_path, monkeypatch, restore_env):
    monkeypatch.setenv("HARNESS_SESSIONS_DIR", str(tmp_path))
    clear_cache()
    path = tmp_path / "session_09_toy.py"
    path.write_text(NOTEBOOK)
    yield path
    clear_cache()


def test_parser_agrees_with_jupytext():
    for path in sorted(tree_dir("solutions").glob("session_*.py")):
        lines, cells = read_cells(path)
        nb = jupytext.read(path)
        assert [c.cell_type for c in cells] == [c.cell_type for c in nb.cells], path.name
        assert [c.tags for c in cells] == [list(c.metadata.get("tags", [])) for c in nb.cells], path.name


def test_export_source_keeps_line_numbers(tree):
    source = export_source(tree)
    original = tree.read_text().splitlines()
    kept = source.splitlines()
    assert len(kept) == len(original)
    for i, line in enumerate(kept):
        assert line in ("", original[i])
    assert "raise RuntimeError" not in source  # the untagged demo cell is blanked
    assert "A title" not in source  # markdown too


def test_loads_only_export_cells(tree):
    module = load_session(9, "sessions")
    assert module.exported(2.5) == 3
    assert module.RAN == [2.5]
    assert module.__file__ == str(tree.resolve())


def test_traceback_points_at_the_notebook_line(tree):
    module = load_session(9, "sessions")
    with pytest.raises(ZeroDivisionError) as info:
        module.broken()
    frame = traceback.extract_tb(info.value.__traceback__)[-1]
    assert Path(frame.filename) == tree.resolve()
    assert tree.read_text().splitlines()[frame.lineno - 1].strip() == "return 1 / 0"
    assert frame.line == "return 1 / 0"  # linecache reads the real file


def test_syntax_error_names_file_and_line(tree):
    text = tree.read_text().replace("return math.floor(x)", "return math.floor(x")
    tree.write_text(text)
    with pytest.raises(NotebookError) as info:
        load_session(9, "sessions")
    line = next(i for i, l in enumerate(text.splitlines(), 1) if "math.floor(x" in l)
    assert "session_09_toy.py" in str(info.value)
    assert info.value.line in (line, line + 1)  # Python reports the open paren's line or the next


def test_error_at_import_names_the_line(tree):
    tree.write_text(tree.read_text().replace("RAN = []", "RAN = undefined_name"))
    with pytest.raises(NotebookError, match=r"line \d+: the export cells raised NameError"):
        load_session(9, "sessions")


def test_cache_and_reload_on_change(tree):
    first = load_session(9, "sessions")
    assert load_session(9, "sessions") is first
    tree.write_text(tree.read_text().replace("+ 1", "+ 2") + "\n")
    second = load_session(9, "sessions")
    assert second is not first and second.exported(1) == 3
    assert load_session(9, "sessions", reload=True) is not second


def test_missing_notebook_says_how_to_restore(tree):
    with pytest.raises(NotebookError, match="restore 05"):
        notebook_path(5, "sessions")


def test_trees_are_separate():
    clear_cache()
    reference = load_session(1, "solutions")
    assert Path(reference.__file__).parent == tree_dir("solutions")
    assert upstream(1) is reference  # earlier sessions come from the reference by default


def test_module_is_importable_and_picklable(tree):
    module = load_session(9, "sessions")
    restored = pickle.loads(pickle.dumps(module.helper))
    assert restored is module.helper
    import importlib

    assert importlib.import_module("harness.notebooks.sessions.session_09_toy") is module


@pytest.mark.parametrize("header", ['tags=["export"]', '[markdown] tags=["a", "b"]', "A title", "[markdown]",
                                    'tags=["export"] exercise="x y"', 'slideshow={"slide_type": "slide"}',
                                    "[markdown] odd=metadata that is not json"])
def test_header_metadata_like_jupytext(header):
    from jupytext.cell_metadata import text_to_metadata

    from harness.autograder.notebook import _text_to_metadata

    assert _text_to_metadata(header) == text_to_metadata(header, allow_title=True)
