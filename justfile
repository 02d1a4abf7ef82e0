# sluice tasks. `just --list` shows them.

# Run sluice on the shipped example config.
run:
    cargo run --release -- run --config config/sluice.toml

# The whole test suite (what CI runs, after fmt and clippy).
test:
    cargo test --workspace

# Everything CI checks.
ci:
    bash .ci/run

# Validate every shipped config.
check-configs:
    for f in config/*.toml; do cargo run -q -- check --config "$f"; done

# Every chaos drill in chaos/scenarios (release build); JSON and JUnit reports go to
# target/chaos/ (NAME.json, NAME.xml).
# Exits non-zero if any drill misses a bound. TOXIPROXY_URL=http://127.0.0.1:8474 uses a real
# Toxiproxy instead of the embedded sluice-toxiproxy.
chaos:
    #!/usr/bin/env bash
    set -uo pipefail
    cargo build --release -q -p sluice -p sluice-chaos || exit 1
    target="${CARGO_TARGET_DIR:-target}"
    mkdir -p "$target/chaos"
    failed=()
    for scenario in chaos/scenarios/*.toml; do
        name="$(basename "$scenario" .toml)"
        "$target/release/sluice" drill "$scenario" --json "$target/chaos/$name.json" \
            --junit "$target/chaos/$name.xml" || failed+=("$name")
        echo
    done
    if [ ${#failed[@]} -gt 0 ]; then
        echo "chaos: FAILED: ${failed[*]}"
        exit 1
    fi
    echo "chaos: all drills passed (reports in $target/chaos/)"

# Benchmarks vs HAProxy, nginx, socat, naive tokio; writes docs/BENCHMARKS.md (`--quick`: smoke run)
[positional-arguments]
bench *ARGS:
    @SLUICEBENCH_INVOCATION="just bench" bench/run "$@"

# The five-minute soak (release build): 100,000 connections with faults drawn from the seed;
# the reports go to target/chaos/soak.json and soak.xml (JUnit). Extra arguments go to
# `sluice soak` (`just soak --seed 7` replays a run's fault schedule). CI runs the 17-second
# variant (chaos/soak/soak-ci.toml) in chaos/runner/tests/soak.rs.
soak *ARGS:
    #!/usr/bin/env bash
    set -uo pipefail
    cargo build --release -q -p sluice -p sluice-chaos || exit 1
    target="${CARGO_TARGET_DIR:-target}"
    mkdir -p "$target/chaos"
    # Every connection is four sockets in this one process; at most 1024 are open at once.
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    "$target/release/sluice" soak chaos/soak/soak.toml --json "$target/chaos/soak.json" \
        --junit "$target/chaos/soak.xml" {{ARGS}}
