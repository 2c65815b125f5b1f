"""The spellings the docker provider reads values back in (pure functions, no Pulumi).

pulumi-docker bridges kreuzwerker/terraform-provider-docker, which stores Docker's view
of each object after a create; the next run diffs the program's inputs against it. The
program sends these spellings so that a second `pulumi up` finds nothing to change.
Settings use them too, to refuse values that no spelling reads back unchanged.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Optional


def go_duration(seconds: int) -> str:
    """Go's time.Duration.String() of whole seconds: 5 -> "5s", 300 -> "5m0s".

    The provider reads healthcheck durations back with Duration.String()
    (resource_docker_container_funcs.go, flattenHealthcheck / the read function).
    """
    if seconds < 0:
        raise ValueError("durations are never negative here")
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def nano_cpus(cpus: str) -> int:
    """Docker's NanoCPUs for a decimal CPU count (docker/cli opts.ParseCPUs)."""
    nano = Decimal(cpus) * 1_000_000_000
    if nano != nano.to_integral_value():
        raise ValueError("more than 9 decimals")
    return int(nano)


def cpus_read_back(nano: int) -> str:
    """The provider's helpers.go nanoInt64ToDecimalString, digit for digit.

    big.Rat.FloatString(9), then: nine zeros in all -> FloatString(1) (which rounds),
    else trailing zeros trimmed. So 2 -> "2.0", 10 -> "10." and 0.05 -> "0.1".
    """
    if nano == 0:
        return "0"
    nine = f"{nano // 10**9}.{nano % 10**9:09d}"
    if nine.count("0") == 9:
        tenths, remainder = divmod(nano, 10**8)
        if 2 * remainder >= 10**8:
            tenths += 1
        return f"{tenths // 10}.{tenths % 10}"
    return nine.rstrip("0")


def stable_cpus(cpus: str) -> Optional[str]:
    """The spelling of `cpus` that reads back unchanged, or None if none does."""
    spelled = cpus_read_back(nano_cpus(cpus))
    return spelled if nano_cpus(spelled) == nano_cpus(cpus) else None
