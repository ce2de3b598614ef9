"""Exercise 2: graph_break_report (one test: it compiles, with Dynamo's recording and eager backends only)."""
import inspect

import pytest
import torch

from harness.autograder.checks import expect, expect_equal

from .conftest import no_cache_entries

pytestmark = pytest.mark.exercise("graph_break_report")


def clean(x):
    return (x.sin() * 2).sum(-1)


def two_items(x):
    scale = x.abs().sum().item()
    y = x / scale
    shift = y.max().item()
    return y - shift


def prints(x):
    print("a print in forward")
    return x * 2


def branches(x):
    if x.sum() > 0:
        return x
    return -x


def _line(fn, text: str) -> int:
    lines, start = inspect.getsourcelines(fn)
    return start + next(i for i, line in enumerate(lines) if text in line)


@pytest.mark.time_limit(60)
def test_report(nb):
    x = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))
    report = nb.graph_break_report(clean, x)
    expect(isinstance(report, dict) and {"graphs", "ops", "breaks", "reasons", "fullgraph", "fullgraph_error"}
           <= set(report), "a dict with graphs, ops, breaks, reasons, fullgraph and fullgraph_error",
           got=sorted(report) if isinstance(report, dict) else type(report).__name__)
    expect_equal((report["graphs"], report["breaks"], report["reasons"], report["fullgraph"], report["fullgraph_error"]),
                 (1, 0, [], True, None), "(graphs, breaks, reasons, fullgraph, fullgraph_error) of a function with "
                 "no break: x.sin() * 2, summed", hint="graphs = explain's graph_count; one reason per entry of "
                 "break_reasons; fullgraph = torch.compile(fn, backend='eager', fullgraph=True)(...) raised nothing")
    expect_equal(report["ops"], 3, "ops recorded for (x.sin() * 2).sum(-1): sin, mul, sum",
                 hint="count the nodes of every graph (graph.graph.nodes) whose op is call_function, call_method or "
                      "call_module; explain's op_count counts call_function nodes only")
    expect(no_cache_entries(clean), "the report leaves no compiled code behind",
           hint="torch._dynamo.reset() after the fullgraph attempt (in a finally: also when it raised)")

    report = nb.graph_break_report(two_items, x)
    lines = [_line(two_items, ".item()"), _line(two_items, "y.max().item()")]
    expect_equal(report["breaks"], 2, "breaks in a function with two .item() calls",
                 hint="len(explained.break_reasons), not explained.graph_break_count")
    expect_equal(report["graphs"], 3, "graphs of a function with two breaks between operations")
    reasons = report["reasons"]
    expect(len(reasons) == 2 and all(r.startswith(f"test_graph_break_report.py:{n}:") for r, n in zip(reasons, lines)),
           f"each reason starts with 'file.py:LINE:', the file's name and the line that broke, in order (lines {lines})",
           got=reasons, hint="where = reason.user_stack[-1]; f'{Path(where.filename).name}:{where.lineno}: ...'")
    expect(all("item" in r.lower() and "\n" not in r for r in reasons),
           "each reason is one line and says what broke (Tensor.item())", got=reasons,
           hint="the first line of reason.reason")
    expect(report["fullgraph"] is True and report["fullgraph_error"] is None,
           "fullgraph=True compiles the two-.item() function (it captures Python numbers as symbols): the "
           "verdict comes from trying, not from the number of breaks", got=report,
           hint="fullgraph = (torch.compile(fn, backend='eager', fullgraph=True)(*args) raised nothing)")

    report = nb.graph_break_report(prints, x)
    expect(report["fullgraph"] is False and isinstance(report["fullgraph_error"], str) and report["fullgraph_error"],
           "a print in the function: explain lists no reason, fullgraph=True fails, and the report says so with "
           "the error's first line", got=report,
           hint="catch the exception of the fullgraph=True call; fullgraph_error = its first line (a str)")
    expect(no_cache_entries(prints), "no compiled code left behind after a failed fullgraph attempt either",
           hint="torch._dynamo.reset() in a finally")

    report = nb.graph_break_report(branches, x.abs())  # takes the branch with nothing to compile after the break
    expect(report["fullgraph"] is False and report["breaks"] == 1 and "\n" not in report["fullgraph_error"],
           "Python branching on a tensor value: one break (explain names it although only one graph has operations), "
           "fullgraph=True fails, fullgraph_error is one line", got=report,
           hint="breaks = len(explained.break_reasons); explain's graph_break_count (graph_count - 1) counts graphs, "
                "and a graph with no operation after a break is never compiled")
