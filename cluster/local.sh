#!/usr/bin/env bash
# A real multi-node Ray cluster on one machine, for tests and demos.
#
#   cluster/local.sh up N        head (0 CPUs) + N worker nodes, each its own raylet
#   cluster/local.sh status      nodes this script started and how many the GCS sees alive
#   cluster/local.sh kill I      kill worker node I (1..N) at once, as if its machine died
#   cluster/local.sh down        stop every node this script started; leave no Ray process
#
# Every node is a separate `ray start --block` in its own process group, so `down` and
# `kill` signal only the processes this script started. We never run `ray stop`: it kills
# every Ray process on the machine, including other users' clusters and test sessions.
#
# Settings (environment):
#   ABLATE_CLUSTER_DIR   state: pids, logs, Ray temp dir   (default /tmp/ablate-cluster;
#                        keep it short, Ray's unix socket paths must stay under 107 bytes)
#   ABLATE_CLUSTER_PORT  GCS port of the head; every other port is derived from it, so two
#                        clusters with different ports never collide   (default 26379)
#   ABLATE_HEAD_CPUS     CPUs the head offers to trials (default 0: trials go to workers)
#   ABLATE_WORKER_CPUS   CPUs per worker node           (default 1)
#   ABLATE_WORKER_GPUS   GPUs per worker node           (default 0)
#   ABLATE_OBJECT_STORE_MB  object store per node       (default 200)
#   RAY_AUTH_MODE        token (default) or disabled. Ray 2.60 turns token authentication on
#                        by itself once ~/.ray/auth_token exists, and a driver then gets in only
#                        with RAY_AUTH_MODE=token in its own environment: `up` prints it with
#                        the address. All nodes and drivers of this machine share that file.
#
# Ports of node i (0 = head, 1..N = workers), from P = ABLATE_CLUSTER_PORT:
#   P gcs, P+2 dashboard (head only); node i: P+10+10i node manager, +1 object
#   manager, +2 dashboard agent http, +3 dashboard agent grpc, +4 metrics, +5 runtime-env
#   agent; worker processes: P+1000+200i .. P+1199+200i. Several raylets share one host,
#   so each needs its own ports; the defaults (e.g. dashboard agent 52365) would collide.
set -euo pipefail

DIR="${ABLATE_CLUSTER_DIR:-/tmp/ablate-cluster}"
PORT="${ABLATE_CLUSTER_PORT:-26379}"
HEAD_CPUS="${ABLATE_HEAD_CPUS:-0}"
WORKER_CPUS="${ABLATE_WORKER_CPUS:-1}"
WORKER_GPUS="${ABLATE_WORKER_GPUS:-0}"
OBJECT_STORE_BYTES=$(( ${ABLATE_OBJECT_STORE_MB:-200} * 1024 * 1024 ))
IP="127.0.0.1"
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-token}"
RAY_TMP="$DIR/ray"
NODES="$DIR/nodes"
START_TIMEOUT_S=60

die() { echo "local.sh: $*" >&2; exit 2; }

usage() {
    sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# Ports of node $1, as `ray start` options.
node_ports() {
    local base=$(( PORT + 10 + 10 * $1 )) workers=$(( PORT + 1000 + 200 * $1 ))
    echo "--node-manager-port $base --object-manager-port $(( base + 1 ))" \
         "--dashboard-agent-listen-port $(( base + 2 ))" \
         "--dashboard-agent-grpc-port $(( base + 3 ))" \
         "--metrics-export-port $(( base + 4 )) --runtime-env-agent-port $(( base + 5 ))" \
         "--min-worker-port $workers --max-worker-port $(( workers + 199 ))"
}

# Start one node in the background, in its own session and process group (setsid), with
# --block so that the `ray start` process lives as long as the node and its pid names the
# group. $1: node name; rest: `ray start` options.
start_node() {
    local name="$1"; shift
    local log="$NODES/$name.log"
    # shellcheck disable=SC2068
    RAY_USAGE_STATS_ENABLED=0 setsid ray start --block --disable-usage-stats \
        --node-ip-address "$IP" --object-store-memory "$OBJECT_STORE_BYTES" \
        --temp-dir "$RAY_TMP" $@ >"$log" 2>&1 < /dev/null &
    echo $! > "$NODES/$name.pid"
}

wait_for_nodes() {
    local want="$1" deadline=$(( SECONDS + START_TIMEOUT_S ))
    local pidfile
    while (( SECONDS < deadline )); do
        if [[ "$(gcs_nodes)" -ge "$want" ]]; then return 0; fi
        for pidfile in "$NODES"/*.pid; do
            if ! running "$(cat "$pidfile")"; then
                echo "local.sh: node $(basename "$pidfile" .pid) exited while starting:" >&2
                tail -n 20 "${pidfile%.pid}.log" >&2
                return 1
            fi
        done
        sleep 1
    done
    echo "local.sh: only $(gcs_nodes) of $want nodes alive after ${START_TIMEOUT_S}s; logs in $NODES" >&2
    tail -n 20 "$NODES"/*.log >&2 || true
    return 1
}

# Alive nodes as the GCS sees them. Ray's own GCS client (internal API, pinned Ray version):
# unlike ray.init() it registers no job per poll and needs no dashboard.
gcs_nodes() {
    python - "$IP:$PORT" <<'EOF' 2>/dev/null || echo 0
import sys
from ray._raylet import GcsClient
client = GcsClient(address=sys.argv[1])
nodes = client.get_all_node_info(timeout=5)
print(sum(1 for info in nodes.values() if info.state == 0))
EOF
}

cmd_up() {
    local workers="${1:-}"
    [[ "$workers" =~ ^[1-9][0-9]*$ ]] || die "up needs the number of worker nodes, e.g. 'up 2'"
    if compgen -G "$NODES/*.pid" > /dev/null; then
        die "a cluster is already up in $DIR (run 'down' first)"
    fi
    mkdir -p "$NODES" "$RAY_TMP"
    echo "$PORT" > "$DIR/port"
    # shellcheck disable=SC2046
    start_node head --head --port "$PORT" --include-dashboard false \
        --dashboard-port $(( PORT + 2 )) --num-cpus "$HEAD_CPUS" --num-gpus 0 $(node_ports 0)
    wait_for_nodes 1 || { cmd_down; exit 1; }
    local i
    for (( i = 1; i <= workers; i++ )); do
        # shellcheck disable=SC2046
        start_node "worker-$i" --address "$IP:$PORT" --num-cpus "$WORKER_CPUS" \
            --num-gpus "$WORKER_GPUS" $(node_ports "$i")
        # One at a time: nodes sharing the temp dir pick their socket names in turn.
        wait_for_nodes $(( i + 1 )) || { cmd_down; exit 1; }
    done
    echo "Ray cluster up: head (${HEAD_CPUS} CPUs) + $workers worker nodes (${WORKER_CPUS} CPUs each)"
    echo "export RAY_ADDRESS=$IP:$PORT RAY_AUTH_MODE=$RAY_AUTH_MODE"
}

# Pids of the process trees under the given pids. Ray workers call setsid, so they leave
# their node's process group: the tree (parent links) finds them, the group does not.
tree_pids() {
    ps -eo pid=,ppid= | awk -v roots="$*" '
        { parent[$1] = $2 }
        END {
            n = split(roots, queue, " "); for (i = 1; i <= n; i++) keep[queue[i]] = 1
            do { grew = 0
                 for (p in parent) if (!(p in keep) && (parent[p] in keep)) { keep[p] = 1; grew = 1 }
            } while (grew)
            for (p in keep) if (p in parent) print p
        }'
}

# Pids of every process this cluster may still have: the trees of our nodes and anything
# whose command line names our Ray temp dir (orphans whose parent already died).
cluster_pids() {
    local roots=() pidfile
    for pidfile in "$NODES"/*.pid; do
        [[ -f "$pidfile" ]] && roots+=("$(cat "$pidfile")")
    done
    { (( ${#roots[@]} )) && tree_pids "${roots[@]}"; pgrep -f -- "$RAY_TMP/" || true; } | sort -u
}

# Whether pid $1 runs; a zombie (exited, not yet reaped by its parent) does not count.
running() {
    local stat
    stat="$(ps -o stat= -p "$1" 2>/dev/null)" || return 1
    [[ -n "$stat" && "$stat" != Z* ]]
}

# Stop the given pids: TERM, a grace period for a clean exit, then KILL what is left.
stop_pids() {
    local grace="$1" deadline alive pid; shift
    (( $# )) || return 0
    kill -TERM "$@" 2>/dev/null || true
    deadline=$(( SECONDS + grace ))
    while (( SECONDS < deadline )); do
        alive=0
        for pid in "$@"; do running "$pid" && alive=1 && break; done
        (( alive )) || return 0
        sleep 0.5
    done
    kill -KILL "$@" 2>/dev/null || true
}

cmd_kill() {
    local i="${1:-}" pidfile pids
    [[ "$i" =~ ^[1-9][0-9]*$ ]] || die "kill needs a worker node number, e.g. 'kill 1'"
    pidfile="$NODES/worker-$i.pid"
    [[ -f "$pidfile" ]] || die "no worker node $i in $DIR"
    # SIGKILL at once, the node and its workers: it vanishes as if its machine had failed.
    mapfile -t pids < <(tree_pids "$(cat "$pidfile")")
    (( ${#pids[@]} )) && kill -KILL "${pids[@]}" 2>/dev/null || true
    rm -f "$pidfile"
    echo "killed worker node $i (${#pids[@]} processes)"
}

cmd_down() {
    local pids left
    # Snapshot first: once a raylet exits, its workers are re-parented and lose the link.
    mapfile -t pids < <(cluster_pids)
    stop_pids "${ABLATE_STOP_GRACE_S:-5}" "${pids[@]}"
    rm -f "$NODES"/*.pid "$DIR/port"
    sleep 0.5
    left="$(for pid in "${pids[@]}" $(pgrep -f -- "$RAY_TMP/"); do
                if running "$pid"; then echo "$pid"; fi; done)"
    if [[ -n "$left" ]]; then
        echo "local.sh: Ray processes still running: $(echo $left)" >&2
        exit 1
    fi
    echo "Ray cluster in $DIR stopped; no Ray process left (${#pids[@]} stopped)"
}

cmd_status() {
    local pidfile name
    if ! compgen -G "$NODES/*.pid" > /dev/null; then
        echo "no cluster up in $DIR"
        return 0
    fi
    # The port the cluster was started with, whatever the environment says now.
    [[ -f "$DIR/port" ]] && PORT="$(cat "$DIR/port")"
    for pidfile in "$NODES"/*.pid; do
        name="$(basename "$pidfile" .pid)"
        if running "$(cat "$pidfile")"; then
            echo "$name: running (pid $(cat "$pidfile"))"
        else
            echo "$name: dead"
        fi
    done
    echo "alive nodes (GCS): $(gcs_nodes)"
    echo "export RAY_ADDRESS=$IP:$PORT RAY_AUTH_MODE=$RAY_AUTH_MODE"
}

case "${1:-}" in
    up) cmd_up "${2:-}" ;;
    down) cmd_down ;;
    status) cmd_status ;;
    kill) cmd_kill "${2:-}" ;;
    *) usage ;;
esac
