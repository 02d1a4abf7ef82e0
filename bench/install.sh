#!/usr/bin/env bash
# Installs the tools the benchmark harness runs, with apt, on Debian bookworm.
#
# Nothing is assumed present. Every package is checked with `apt-cache policy` first, so a
# missing candidate fails here with its name rather than halfway through a run. Services are
# never started by the packages' postinst scripts: a policy-rc.d that denies every start is put
# in place for the install (Debian images usually ship one already), because nginx's default
# site would otherwise listen on port 80 of every address.
set -euo pipefail

PACKAGES=(
  haproxy              # HAProxy 2.6 (mode tcp, splice-auto)
  nginx                # nginx 1.22 (the upstream HTTP server, and the stream forwarder)
  libnginx-mod-stream  # ngx_stream_module.so, loaded explicitly by the generated configs
  socat                # fork-per-connection forwarder
  iperf3               # throughput and CPU per GB
  wrk                  # connections/s and latency
  python3-matplotlib   # the chart (for /usr/bin/python3, which runs the driver)
)

# Binaries that prove the install worked; checked before apt is touched, so a second run is quick.
have_all() {
  command -v haproxy >/dev/null && command -v nginx >/dev/null && command -v socat >/dev/null \
    && command -v iperf3 >/dev/null && command -v wrk >/dev/null \
    && [ -e /usr/lib/nginx/modules/ngx_stream_module.so ] \
    && /usr/bin/python3 -c 'import matplotlib' 2>/dev/null
}

if have_all; then
  echo "bench/install.sh: every tool is present"
  exit 0
fi

if [ "$(id -u)" != 0 ]; then
  echo "bench/install.sh: need root for apt-get (or install: ${PACKAGES[*]})" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
APT_OPTS=(-o DPkg::Lock::Timeout=600 -q)

echo "bench/install.sh: apt-get update"
apt-get "${APT_OPTS[@]}" update

missing=()
for p in "${PACKAGES[@]}"; do
  candidate=$(apt-cache policy "$p" | awk '/Candidate:/ {print $2}')
  if [ -z "$candidate" ] || [ "$candidate" = "(none)" ]; then
    missing+=("$p")
  else
    echo "  $p $candidate"
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bench/install.sh: no apt candidate for: ${missing[*]}" >&2
  exit 1
fi

# Keep postinst from starting nginx/haproxy services (see the header).
POLICY=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$POLICY" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$POLICY"
  chmod +x "$POLICY"
  created_policy=1
fi
cleanup() { if [ "$created_policy" = 1 ]; then rm -f "$POLICY"; fi; }
trap cleanup EXIT

apt-get "${APT_OPTS[@]}" install -y --no-install-recommends "${PACKAGES[@]}"

if ! have_all; then
  echo "bench/install.sh: install finished but a tool is still missing" >&2
  exit 1
fi
echo "bench/install.sh: done"
