"""The forwarders under test: for each, its config file and command line.

Every forwarder listens on 127.0.0.1 only, with the same settings where they have one: listen
backlog 1024, TCP_NODELAY on both sides, idle/client/server timeouts of 10 minutes (longer than
any measurement), no access log, connection capacity raised to what the idle test needs.

- ``base``    Setup, Running, the Forwarder base class, Direct (no forwarder, the reference)
- ``sluice``  sluice's profiles and config generation
- ``others``  HAProxy, nginx stream, socat, the naive tokio forwarder
"""

from __future__ import annotations

from pathlib import Path

from .base import Direct, Forwarder, Running, Setup
from .others import HAProxy, Naive, NginxStream, Socat
from .sluice import SLUICE_PROFILES, Sluice

__all__ = ["Direct", "Forwarder", "HAProxy", "Naive", "NginxStream", "Running", "SLUICE_PROFILES",
           "Setup", "Sluice", "Socat", "all_forwarders"]


def all_forwarders(sluice_bin: Path, naive_bin: Path) -> list[Forwarder]:
    """Every forwarder, in report order."""
    return [
        Direct(),
        Sluice(sluice_bin, "bare"),
        Sluice(sluice_bin, "copy"),
        Sluice(sluice_bin, "full"),
        Sluice(sluice_bin, "silent"),
        Sluice(sluice_bin, "onesocket"),
        HAProxy(splice=False),
        HAProxy(splice=True),
        NginxStream("1"),
        NginxStream("auto"),
        Socat(),
        Naive(naive_bin),
    ]
