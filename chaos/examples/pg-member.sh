#!/bin/sh
# PostgreSQL for chaos/examples/postgres-failover.toml (run from the repository root):
#   pg-member.sh PORT               one member, the drill's `start` command
#   pg-member.sh --bench HOST PORT  one pgbench client run, the drill's traffic command
#
# Both take PostgreSQL's own binaries from /usr/lib/postgresql/VERSION/bin (Debian keeps them
# off PATH), else from PATH. On Debian /usr/bin/pgbench is pg_wrapper, a Perl script that picks
# a version on every call: measured on a 2-core machine, 43 ms per call against 5 ms for
# pgbench itself, and 290 ms when the machine is busy. A run every 50 ms would pay that each
# time, and the drill would count it as failover time (a run counts as served when it ends).
#
# Member: the first start makes a cluster (initdb, trust auth, user postgres) in
# $TMPDIR/sluice-pg.DRILL.PORT, DRILL being the drill's PID; a restart after a kill starts
# PostgreSQL on the same directory, so it does what a crashed primary does when it comes back:
# crash recovery of its own data, then accept.
# initdb and postgres refuse to run as root: as root they run as the postgres user (runuser).
# The script ends by exec'ing postgres, so the drill's SIGKILL to the process group it created
# kills the postmaster itself. Its children (checkpointer, backends) each call setsid() and so
# are outside that group; they notice the postmaster's death and exit on their own.
# A watcher in a session of its own removes the directory once the drill has exited and no
# process works in the directory any more.
set -eu

# The newest installed version that has the program this mode runs (the glob sorts
# 10 < 15 < 17; a 9.x would sort last).
program=postgres
[ "${1:-}" != --bench ] || program=pgbench
bin=""
for b in /usr/lib/postgresql/*/bin; do
    [ ! -x "$b/$program" ] || bin=$b
done
if [ -z "$bin" ]; then
    # Not Debian's layout: initdb, postgres and pgbench on PATH.
    bin=$(dirname "$(command -v "$program" || echo "/not-installed/$program")")
fi

if [ "${1:-}" = --bench ]; then
    host=${2:?usage: pg-member.sh --bench HOST PORT}
    port=${3:?usage: pg-member.sh --bench HOST PORT}
    # One client, one connection, 5 transactions of `SELECT 1` (the script on stdin, so no
    # `pgbench -i` tables are needed); pgbench opens a short setup connection first.
    printf 'SELECT 1;\n' | "$bin/pgbench" -h "$host" -p "$port" -U postgres \
        -n -c 1 -t 5 -f - postgres
    exit
fi

port=${1:?usage: pg-member.sh PORT}
[ -x "$bin/postgres" ] || { echo "pg-member.sh: postgres not found (apt-get install postgresql)" >&2; exit 127; }
as=""
if [ "$(id -u)" -eq 0 ]; then
    # runuser keeps the process group: the drill's group SIGKILL reaches it and postgres.
    as="runuser -u postgres --"
fi

# $PPID is the drill: `sh -c "exec pg-member.sh {port}"` is its child and became this script.
drill=$PPID
dir="${TMPDIR:-/tmp}/sluice-pg.$drill.$port"

# Whether a live process works in $dir: every PostgreSQL process has the data directory as cwd.
busy() {
    find /proc/[0-9]*/cwd -maxdepth 0 -lname "$dir" 2>/dev/null | grep -q .
}

if [ ! -f "$dir/PG_VERSION" ]; then
    mkdir -m 700 "$dir"
    [ -z "$as" ] || chown postgres "$dir"
    setsid sh -c '
        while s=$(awk "{print \$3}" "/proc/$1/stat" 2>/dev/null) && [ "$s" != Z ]; do sleep 0.5; done
        while find /proc/[0-9]*/cwd -maxdepth 0 -lname "$2" 2>/dev/null | grep -q .; do sleep 0.5; done
        rm -rf "$2"' watcher "$drill" "$dir" </dev/null >/dev/null 2>&1 &
    $as "$bin/initdb" --no-sync -A trust -U postgres -D "$dir" >/dev/null
else
    # A restart: the killed server's processes leave within milliseconds of its death (they
    # watch the postmaster). Wait for that, then drop its lock file, which names a dead (or
    # unreaped, which PostgreSQL takes for running) postmaster.
    i=0
    while busy; do
        i=$((i + 1))
        [ "$i" -le 500 ] || { echo "pg-member.sh: old server processes still run in $dir" >&2; exit 1; }
        sleep 0.01
    done
    rm -f "$dir/postmaster.pid"
fi

exec $as "$bin/postgres" -D "$dir" -p "$port" -k "$dir" \
    -c listen_addresses=127.0.0.1 -c fsync=off
