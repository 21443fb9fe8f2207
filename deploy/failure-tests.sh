#!/usr/bin/env bash
# Builds the trecho image, starts deploy/compose.yaml under a compose project
# of its own, runs the container failure tests (trecho-failure-tests)
# against it, and removes the project's containers, network, volumes and
# image afterwards, also on failure or Ctrl-C. Exits 0 when every promise
# held, 1 when one broke, and 0 with a message when no Docker Engine
# responds.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
# Cargo puts binaries under CARGO_TARGET_DIR when it is set.
target=${CARGO_TARGET_DIR:-$repo/target}

if ! docker info >/dev/null 2>&1; then
    echo "container failure tests skipped: no Docker Engine answers to 'docker info'"
    exit 0
fi
if docker compose version >/dev/null 2>&1; then
    compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
    compose=(docker-compose)
else
    echo "error: neither 'docker compose' nor 'docker-compose' is installed; install one" >&2
    exit 1
fi

# Compose project names are lower-case letters and digits here, so that
# docker-compose v1 and v2 name the network <project>_cluster alike.
project="trechoft$$$(date +%s)"
export TRECHO_IMAGE="trecho-failure-tests:$project"
# The spare shards (profile grow) start with the others, owning no slots,
# for the scenario that grows the cluster and shrinks it back.
compose+=(-p "$project" -f deploy/compose.yaml --profile grow)
# The routers' admin token, for that scenario's trecho admin commands.
TRECHO_ADMIN_TOKEN="ft-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
export TRECHO_ADMIN_TOKEN

cleanup() {
    status=$?
    trap - EXIT INT TERM
    if ((status != 0)); then
        echo "== last log lines of the cluster"
        "${compose[@]}" logs --no-color --tail 40 2>&1 || true
    fi
    echo "== removing compose project $project"
    "${compose[@]}" down --volumes --remove-orphans --timeout 5 >/dev/null 2>&1 || true
    leftovers=$(docker ps -aq --filter "label=trecho.failure-tests=$project")
    if [[ -n $leftovers ]]; then
        docker rm -f $leftovers >/dev/null 2>&1 || true
    fi
    docker image rm "$TRECHO_IMAGE" >/dev/null 2>&1 || true
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Free ports on the host for the two routers, tried from a random start.
free_port() {
    local candidate=$1
    while (exec 3<>"/dev/tcp/127.0.0.1/$candidate") 2>/dev/null; do
        candidate=$((candidate + 1))
    done
    echo "$candidate"
}
port=$(free_port $((20000 + RANDOM % 30000)))
export TRECHO_PORT=$port
TRECHO_PORT_2=$(free_port $((port + 1)))
export TRECHO_PORT_2

echo "== building the image $TRECHO_IMAGE"
bash deploy/build-images.sh
cargo build --locked -p trecho-tests --bin trecho-failure-tests

echo "== starting compose project $project, routers on 127.0.0.1:$port and :$TRECHO_PORT_2"
"${compose[@]}" up -d
for service in router router-2; do
    container=$("${compose[@]}" ps -q "$service")
    for _ in $(seq 60); do
        health=$(docker inspect --format '{{.State.Health.Status}}' "$container")
        [[ $health == healthy ]] && break
        sleep 1
    done
    if [[ $health != healthy ]]; then
        echo "error: $service is $health after 60 s; see its log below" >&2
        exit 1
    fi
done
# Both routers take the shard map from the shards and show the same one.
"$target/release/trecho" status --router "127.0.0.1:$port"
"$target/release/trecho" status --router "127.0.0.1:$TRECHO_PORT_2" >/dev/null

echo "== failure tests"
started=$(date +%s)
"$target/debug/trecho-failure-tests" --router "127.0.0.1:$port" --project "$project" \
    --image "$TRECHO_IMAGE"
echo "== failure tests passed in $(($(date +%s) - started)) s"
