"""Running the pulumi and docker CLIs from the operator tools: captured, never
interactive, bounded in time; a command that hangs or is missing is a failed result."""

from __future__ import annotations

import subprocess
from typing import Callable, Mapping, Optional, Sequence

Runner = Callable[[Sequence[str], float], subprocess.CompletedProcess]


def run_command(argv: Sequence[str], timeout: float,
                env: Optional[Mapping[str, str]] = None) -> subprocess.CompletedProcess:
    """ENV: the whole environment of the command (a secret travels there, never in ARGV)."""
    try:
        return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                              check=False, stdin=subprocess.DEVNULL,
                              env=dict(env) if env is not None else None)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(argv, 124, "", f"no answer within {timeout:g}s")
    except OSError as error:
        return subprocess.CompletedProcess(argv, 127, "", str(error))


def last_line(text: str) -> str:
    """The last non-empty line of a command's output, cut to a readable length."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no message"
