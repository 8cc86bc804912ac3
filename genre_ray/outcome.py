"""Exit status of a job that processes many inputs, some of which may be bad.

A bad file is reported (a row or a list entry with its reason), never fatal. The exit status says whether the job
did its work: 0 when at least one input succeeded, 1 when none did — or, with ``fail_on_error``, when any failed.
"""

from __future__ import annotations


def exit_status(ok: int, failed: int, fail_on_error: bool = False) -> int:
    """``ok`` inputs succeeded, ``failed`` did not → process exit status (0 or 1)."""
    if ok == 0:
        return 1
    return 1 if fail_on_error and failed > 0 else 0
