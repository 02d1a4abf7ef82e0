# sluice container image: build with the pinned toolchain, run as a non-root user.
#   docker build -t sluice .
#   docker run --rm -p 8080:8080 -p 9901:9901 -v $PWD/deploy/sluice.toml:/etc/sluice/sluice.toml:ro sluice
# See docs/DEPLOY.md.

# The MSRV (Cargo.toml rust-version): what CI proves builds.
FROM rust:1.88-bookworm AS build
WORKDIR /src
COPY . .
# --locked: the image gets exactly the dependency versions CI tested.
RUN cargo build --release --locked -p sluice --bin sluice \
 && cp target/release/sluice /usr/local/bin/sluice

FROM debian:bookworm-slim
# A fixed numeric id, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin sluice
COPY --from=build /usr/local/bin/sluice /usr/local/bin/sluice
COPY deploy/sluice.toml /etc/sluice/sluice.toml
USER 10001:10001
EXPOSE 8080 9901
# /healthz answers 200 while serving and 503 while draining. The slim image has no HTTP
# client; bash's /dev/tcp is enough for one GET.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9901 && printf 'GET /healthz HTTP/1.0\\r\\nHost: 127.0.0.1:9901\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
# SIGTERM drains (shutdown_delay, then shutdown_grace); docker stop's default 10 s is too
# short for the shipped 20 s grace: use `docker stop -t 40`, or STOPSIGNAL stays SIGTERM and
# the runtime's timeout decides.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/sluice"]
CMD ["run", "--config", "/etc/sluice/sluice.toml", "--watch"]
