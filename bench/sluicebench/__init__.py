"""sluicebench: runs sluice side by side with HAProxy, nginx (stream), socat and a naive tokio
forwarder on 127.0.0.1, and writes the results as JSON, Markdown and a PNG chart.

Modules, in the order a run uses them:

- ``procs``       every process the harness starts, stopped by PID; what /proc says about them
- ``upstreams``   the servers behind the forwarders (iperf3, nginx HTTP, idle holder, probe targets)
- ``forwarders``  one class per forwarder under test: its config file and its command line
- ``scenarios``   the measurements: throughput and CPU, HTTP rates and latency, idle RSS, health cost
- ``metrics``     the figures a run reports (unit, which direction is better)
- ``machine``     machine and tool versions for the report
- ``report``      medians, ranges and ratios; docs/BENCHMARKS.md
- ``chart``       docs/benchmarks.png
- ``helpers``     small socket programs run as their own processes (holder, client, listeners)

Nothing here runs under ``cargo test``: benchmarks are not tests.
"""
