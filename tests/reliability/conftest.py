"""The reliability suite (issue 15): counts the cases it ran and prints ``reliability: N cases`` at the end."""

from __future__ import annotations

import os

_HERE = os.path.dirname(os.path.abspath(__file__))
_COUNTS = {"passed": 0, "failed": 0, "skipped": 0}


def _in_suite(report) -> bool:
    path = str(getattr(report, "fspath", "") or report.nodeid.split("::")[0])
    return os.path.abspath(path).startswith(_HERE + os.sep)


def pytest_runtest_logreport(report) -> None:
    """One outcome per case: its call, or its setup when that skipped or failed (the call then never runs)."""
    if not _in_suite(report):
        return
    if report.when == "call" or (report.when == "setup" and not report.passed):
        _COUNTS["passed" if report.passed else "skipped" if report.skipped else "failed"] += 1


def pytest_terminal_summary(terminalreporter) -> None:
    total = sum(_COUNTS.values())
    if total:
        terminalreporter.write_line(f"reliability: {total} cases ({_COUNTS['passed']} passed, "
                                    f"{_COUNTS['failed']} failed, {_COUNTS['skipped']} skipped)")
