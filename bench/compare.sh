#!/usr/bin/env bash
# Measures trecho, Redis and PostgreSQL on the same bookings with
# `trecho bench`, and prints one table with the ratios trecho / each peer.
#
# Every server runs on loopback from a temporary folder and is stopped by
# its PID at the end. Redis runs in three configurations: no persistence,
# appendfsync everysec and appendfsync always. PostgreSQL runs with its
# defaults (fsync on, synchronous_commit on). trecho runs a router and 3
# shards whose journals fsync before every reply. Runs alternate between
# the systems, and each trecho run starts a fresh cluster so that every run
# books the same empty segments. One more trecho run per load books while
# a rebalance runs: `trecho admin` moves half of shard 0's slots to shard 1
# and `rebalance` evens them out again. The table shows that run on a line
# of its own.
#
# Usage: bench/compare.sh [--duration SECONDS] [--rounds N] [--workloads "book hot"]
#                         [--loads "64x1 64x16"] [--port-base PORT] [--out DIR]
# --out keeps each run's JSON summary in DIR.
# Needs root for apt-get (only when redis-server or postgresql is missing)
# and to run PostgreSQL as the postgres user.
set -euo pipefail

duration=10
rounds=1
workloads="book hot"
loads="64x1 64x16"
# Below the usual ephemeral range (32768 and up), so no outgoing connection
# uses one of these ports.
port_base=21000
out=""
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) duration=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        --workloads) workloads=$2; shift 2 ;;
        --loads) loads=$2; shift 2 ;;
        --port-base) port_base=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        -h|--help) sed -n 2,18p "$0"; exit 0 ;;
        *) echo "unknown option $1; see $0 --help" >&2; exit 2 ;;
    esac
done

repo=$(cd "$(dirname "$0")/.." && pwd)
# Each trecho run gets its own ports: a cluster just stopped can leave its
# ports unusable for a while.
trecho_runs=0
redis_port=$((port_base + 379))
pg_port=$((port_base + 432))
work=$(mktemp -d /tmp/trecho-compare.XXXXXX)
# The postgres user must reach its data folder inside.
chmod 755 "$work"
results="$work/results"
mkdir -p "$results"
pids=()

stop_all() {
    for pid in "${pids[@]}"; do
        kill -INT "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    pids=()
}
cleanup() {
    stop_all
    if [ -n "${pg_pid:-}" ]; then
        kill -INT "$pg_pid" 2>/dev/null || true
        while kill -0 "$pg_pid" 2>/dev/null; do sleep 0.1; done
    fi
    rm -rf "$work"
}
trap cleanup EXIT

install_missing() {
    local missing=()
    command -v redis-server >/dev/null || missing+=(redis-server)
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
    command -v python3 >/dev/null || missing+=(python3)
    if [ ${#missing[@]} -gt 0 ]; then
        echo "== installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

wait_for_port() {
    local port=$1 what=$2
    for _ in $(seq 150); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.2
    done
    echo "$what did not listen on 127.0.0.1:$port within 30 s; see $work" >&2
    exit 1
}

start_postgres() {
    local bin
    bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
    mkdir -p "$work/pg"
    chown postgres "$work/pg"
    runuser -u postgres -- "$bin/initdb" -D "$work/pg/data" -U postgres --auth=trust >/dev/null
    # fsync and synchronous_commit keep their defaults (on).
    runuser -u postgres -- "$bin/pg_ctl" -D "$work/pg/data" -l "$work/pg/log" -w start \
        -o "-p $pg_port -k $work/pg -c listen_addresses=127.0.0.1 -c max_connections=200 -c shared_buffers=256MB" >/dev/null
    pg_pid=$(head -1 "$work/pg/data/postmaster.pid")
}

# run_trecho LABEL ARGS...: a fresh router and 3 shards, then one bench run.
# With REBALANCE=1, slots move between the shards during the run.
run_trecho() {
    local name=$1; shift
    local label="router + 3 shards, fsync"
    [ "${REBALANCE:-0}" = 1 ] && label="$label, during a rebalance"
    local data="$work/trecho-$name"
    local trecho_port=$((port_base + 1000 + 10 * trecho_runs))
    trecho_runs=$((trecho_runs + 1))
    "$trecho" cluster --listen "127.0.0.1:$trecho_port" --data-dir "$data" >"$data.log" 2>&1 &
    local cluster=$!
    pids+=($cluster)
    for _ in $(seq 150); do
        grep -q "cluster ready" "$data.log" 2>/dev/null && break
        kill -0 "$cluster" 2>/dev/null || break
        sleep 0.2
    done
    if ! grep -q "cluster ready" "$data.log"; then
        echo "the trecho cluster did not start:" >&2
        tail -5 "$data.log" >&2
        exit 1
    fi
    "$trecho" bench --target trecho --address "127.0.0.1:$trecho_port" --label "$label" \
        --json "$@" >"$results/$name.json" &
    local bench=$!
    if [ "${REBALANCE:-0}" = 1 ]; then
        # Let the load settle, then move half of shard 0's slots to shard 1
        # and let rebalance even them out again.
        sleep 2
        {
            "$trecho" admin move-slots 0-2730 --to 1 --router "127.0.0.1:$trecho_port"
            "$trecho" admin rebalance --router "127.0.0.1:$trecho_port"
        } >"$work/$name.admin" 2>&1 || {
            echo "the rebalance during the run failed:" >&2
            tail -5 "$work/$name.admin" >&2
        }
        grep -h "longest write pause" "$work/$name.admin" | sed "s/^/rebalance during $name: /" >&2 || true
    fi
    wait "$bench"
    stop_all
    rm -rf "$data"
}

# run_redis LABEL PERSISTENCE ARGS...: a fresh redis-server, then one run.
run_redis() {
    local name=$1 persistence=$2; shift 2
    local dir="$work/redis-$name"
    mkdir -p "$dir"
    local config=(--save "" --appendonly no)
    case "$persistence" in
        everysec) config=(--save "" --appendonly yes --appendfsync everysec) ;;
        always) config=(--save "" --appendonly yes --appendfsync always) ;;
    esac
    redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$dir" --logfile "$dir/log" "${config[@]}" &
    pids+=($!)
    wait_for_port "$redis_port" redis-server
    local label="no persistence"
    [ "$persistence" = none ] || label="appendfsync $persistence"
    "$trecho" bench --target redis --address "127.0.0.1:$redis_port" --label "$label" \
        --json "$@" >"$results/$name.json"
    stop_all
    rm -rf "$dir"
}

run_postgres() {
    local name=$1; shift
    "$trecho" bench --target postgres --address "127.0.0.1:$pg_port" \
        --label "synchronous_commit on" --json "$@" >"$results/$name.json"
}

install_missing
echo "== building the release binary"
(cd "$repo" && cargo build --release --locked -p trecho-client)
trecho="${CARGO_TARGET_DIR:-$repo/target}/release/trecho"
start_postgres

systems=(trecho redis-none redis-everysec redis-always postgres)
for round in $(seq "$rounds"); do
    for workload in $workloads; do
        for load in $loads; do
            c=${load%x*}
            d=${load#*x}
            args=(--workload "$workload" -c "$c" -d "$d" --duration "$duration" --seed "$round")
            # Rotate the order each round so no system always runs first.
            for i in "${!systems[@]}"; do
                system=${systems[$(((i + round - 1) % ${#systems[@]}))]}
                name="$round-$workload-$load-$system"
                echo "== round $round: $workload $load on $system" >&2
                case "$system" in
                    trecho) run_trecho "$name" "${args[@]}" ;;
                    redis-*) run_redis "$name" "${system#redis-}" "${args[@]}" ;;
                    postgres) run_postgres "$name" "${args[@]}" ;;
                esac
            done
        done
    done
done

# The benchmark's line under a rebalance: the book workload at every load.
export TRECHO_ADMIN_TOKEN="bench-$$-$RANDOM"
for load in $loads; do
    c=${load%x*}
    d=${load#*x}
    echo "== book $load on trecho during a rebalance" >&2
    REBALANCE=1 run_trecho "1-book-$load-trecho-rebalance" \
        --workload book -c "$c" -d "$d" --duration "$duration" --seed 1
done

echo
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
echo "redis: $(redis-server --version | awk '{print $3}' | cut -d= -f2), postgresql: $(ls /usr/lib/postgresql | sort -V | tail -1), $duration s per run, $rounds round(s)"
python3 "$repo/bench/table.py" "$results"
if [ -n "$out" ]; then
    mkdir -p "$out"
    cp "$results"/*.json "$out"/
fi
