"""What every forwarder shares: the :class:`Setup` it is given, the :class:`Running` instance
it returns, the :class:`Forwarder` base class, and :class:`Direct`, the no-forwarder reference."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .. import procs

IDLE_TIMEOUT = "10m"


@dataclass
class Setup:
    """What one forwarder instance must do."""

    listen_port: int
    upstreams: list[int]
    # Client connections the forwarder must accept at once (the idle test raises it).
    max_conns: int = 4096
    # Probe every upstream at this interval ("1s"), for the health-cost figure; None = the
    # forwarder's usual settings.
    health_interval: str | None = None


@dataclass
class Running:
    """A started forwarder. ``proc`` is None for ``direct``."""

    port: int
    proc: procs.Proc | None
    argv: list[str] = field(default_factory=list)
    config: str = ""


class Forwarder:
    """Base class: ``id`` (stable key in results), ``label`` (report), ``settings`` (one line)."""

    id = ""
    label = ""
    settings = ""
    # Can probe members actively (the health-cost figure).
    health_probes = False
    # Scenarios it takes part in; None = all of them.
    scenarios: set[str] | None = None

    def runs(self, scenario: str) -> bool:
        """Whether this forwarder takes part in ``scenario`` ("throughput", "http", ...)."""
        return self.scenarios is None or scenario in self.scenarios

    def available(self) -> str | None:
        """None if it can run here, else why not."""
        return None

    def write_config(self, setup: Setup, workdir: Path) -> tuple[list[str], str]:
        """Writes any config file into ``workdir``; returns (argv, config text)."""
        raise NotImplementedError

    def check(self, argv: list[str], workdir: Path) -> None:
        """Validates the config before starting (``haproxy -c``, ``nginx -t``, ``sluice check``)."""

    def env(self) -> dict[str, str] | None:
        """Environment for the process (None = inherit)."""
        return None

    def start(self, setup: Setup, workdir: Path) -> Running:
        """Writes config, checks it, starts the process and waits until it listens."""
        workdir.mkdir(parents=True, exist_ok=True)
        argv, config = self.write_config(setup, workdir)
        self.check(argv, workdir)
        env = self.env()
        if env is not None:
            env = {**os.environ, **env}
        proc = procs.start(self.id, argv, workdir, env=env)
        procs.wait_listening(setup.listen_port, proc)
        return Running(setup.listen_port, proc, argv, config)

    def stop(self, running: Running) -> None:
        """Stops it (and its workers or children) by PID."""
        if running.proc is not None:
            procs.stop(running.proc)


# === direct ===


class Direct(Forwarder):
    id = "direct"
    label = "direct (no forwarder)"
    settings = "client connects straight to the upstream; reference only"

    def start(self, setup: Setup, workdir: Path) -> Running:
        return Running(setup.upstreams[0], None)
