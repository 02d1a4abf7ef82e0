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

# Benchmarks vs HAProxy, nginx, socat, naive tokio; writes docs/BENCHMARKS.md (`--quick`: smoke run)
[positional-arguments]
bench *ARGS:
    @SLUICEBENCH_INVOCATION="just bench" bench/run "$@"
