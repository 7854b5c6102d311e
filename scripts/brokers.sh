# Starts private message brokers for the tests: NATS (JetStream), RabbitMQ and Redis.
#
#   source scripts/brokers.sh && start_test_brokers
#
# exports
#   TIDEMARK_TEST_NATS_URL    nats://127.0.0.1:PORT (JetStream enabled)
#   TIDEMARK_TEST_AMQP_URL    amqp://guest:guest@127.0.0.1:PORT/%2f
#   TIDEMARK_TEST_REDIS_URL   redis://127.0.0.1:PORT/
#   TIDEMARK_TEST_BROKER_CTL  a script: `$TIDEMARK_TEST_BROKER_CTL {nats|rabbitmq|redis} {stop|start}`
#                             (tests stop a broker mid-stream and start it again on the same
#                             port and data)
#
# Each server runs from the Debian package's binaries, listens on a free loopback port only,
# keeps its data in one temporary directory, and runs as a non-root user (as root: the system
# user `tidemark-broker`, created if missing). No system instance is used or touched: the
# packages' own services (if any run) keep their default ports, and RabbitMQ gets its own node
# name, cookie, epmd port and distribution port. Everything is stopped and deleted when the
# calling shell exits.
#
# Run directly (`bash scripts/brokers.sh ctl NAME ACTION`) it is the broker-ctl helper; it
# reads the directory from TIDEMARK_BROKERS_DIR.

BROKER_USER=tidemark-broker
RABBITMQ_BIN=/usr/lib/rabbitmq/bin

_brokers_free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Whether a process is running (a zombie, left to a parent that has not reaped it, is not).
_brokers_alive() {
  [ -r "/proc/$1/stat" ] || return 1
  ! grep -qE '^[0-9]+ \(.*\) Z' "/proc/$1/stat" 2>/dev/null
}

# Waits until 127.0.0.1:$2 accepts a TCP connection; $1 names the server, $3 is its log.
_brokers_wait_for_port() {
  local name=$1 port=$2 log=$3 deadline=$((SECONDS + ${4:-60}))
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      echo "$name did not open 127.0.0.1:$port in time; its log ($log):" >&2
      tail -n 40 "$log" >&2 2>/dev/null || true
      return 1
    fi
    sleep 0.2
  done
}

# Starts one server in the background as the brokers' owner (as root: the system user, through
# setpriv, which execs the server itself with no process in between); its pid (the server itself, or for
# RabbitMQ its start script, which forwards signals to the Erlang VM) goes to $DIR/NAME.pid.
_brokers_spawn() {
  local name=$1; shift
  local dir=$TIDEMARK_BROKERS_DIR
  # A simple command put in the background is forked and exec'd: `$!` is its pid (a function
  # would run in a subshell whose pid is not the server's).
  if [ "$(id -u)" -eq 0 ]; then
    setpriv --reuid="$BROKER_USER" --regid="$(id -g "$BROKER_USER")" --init-groups -- \
      env "$@" >>"$dir/$name.out" 2>&1 </dev/null &
  else
    env "$@" >>"$dir/$name.out" 2>&1 </dev/null &
  fi
  echo $! >"$dir/$name.pid"
}

_brokers_start_one() {
  local name=$1 dir=$TIDEMARK_BROKERS_DIR
  # shellcheck disable=SC1091
  . "$dir/env"
  case "$name" in
    nats)
      _brokers_spawn nats nats-server -js -sd "$dir/nats" -a 127.0.0.1 -p "$NATS_PORT" \
        -n tidemark-test -l "$dir/nats/nats.log"
      _brokers_wait_for_port nats "$NATS_PORT" "$dir/nats/nats.log"
      ;;
    redis)
      # No snapshots; the append-only file keeps the data across a stop and start.
      _brokers_spawn redis redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$dir/redis" \
        --save '' --appendonly yes --appendfsync everysec --daemonize no \
        --logfile "$dir/redis/redis.log" --protected-mode yes
      _brokers_wait_for_port redis "$REDIS_PORT" "$dir/redis/redis.log"
      ;;
    rabbitmq)
      _brokers_spawn rabbitmq HOME="$dir/rabbitmq" \
        RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq/rabbitmq-env.conf" \
        RABBITMQ_NODENAME="$RABBITMQ_NODENAME" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
        RABBITMQ_NODE_PORT="$RABBITMQ_PORT" RABBITMQ_DIST_PORT="$RABBITMQ_DIST_PORT" \
        ERL_EPMD_PORT="$RABBITMQ_EPMD_PORT" ERL_EPMD_ADDRESS=127.0.0.1 \
        RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
        RABBITMQ_CONFIG_FILE="$dir/rabbitmq/rabbitmq.conf" \
        RABBITMQ_ADVANCED_CONFIG_FILE="$dir/rabbitmq/advanced.config" \
        RABBITMQ_ENABLED_PLUGINS_FILE="$dir/rabbitmq/enabled_plugins" \
        RABBITMQ_MNESIA_BASE="$dir/rabbitmq/mnesia" RABBITMQ_LOG_BASE="$dir/rabbitmq/log" \
        RABBITMQ_PID_FILE="$dir/rabbitmq/node.pid" \
        "$RABBITMQ_BIN/rabbitmq-server"
      # The AMQP listener opens once the broker has booted.
      _brokers_wait_for_port rabbitmq "$RABBITMQ_PORT" "$dir/rabbitmq.out" 120
      ;;
    *) echo "unknown broker \`$name\` (nats, rabbitmq or redis)" >&2; return 2 ;;
  esac
}

_brokers_stop_one() {
  local name=$1 dir=$TIDEMARK_BROKERS_DIR pid deadline
  [ -f "$dir/$name.pid" ] || return 0
  pid=$(cat "$dir/$name.pid")
  rm -f "$dir/$name.pid"
  kill -TERM "$pid" 2>/dev/null || return 0
  deadline=$((SECONDS + 60))
  while _brokers_alive "$pid"; do
    if ((SECONDS >= deadline)); then
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.1
  done
  wait "$pid" 2>/dev/null || true
  if [ "$name" = rabbitmq ] && [ -f "$dir/rabbitmq/node.pid" ]; then
    # The start script forwards TERM to the VM and waits for it; make sure it is gone.
    local vm
    vm=$(cat "$dir/rabbitmq/node.pid" 2>/dev/null || true)
    if [ -n "$vm" ]; then
      deadline=$((SECONDS + 30))
      while _brokers_alive "$vm" && ((SECONDS < deadline)); do sleep 0.1; done
      kill -KILL "$vm" 2>/dev/null || true
    fi
    rm -f "$dir/rabbitmq/node.pid"
  fi
}

start_test_brokers() {
  local missing=() binary
  for binary in nats-server redis-server "$RABBITMQ_BIN/rabbitmq-server"; do
    command -v "$binary" >/dev/null 2>&1 || missing+=("$binary")
  done
  if ((${#missing[@]})); then
    echo "broker binaries not found: ${missing[*]} (apt-get install nats-server rabbitmq-server redis-server)" >&2
    return 1
  fi
  if [ "$(id -u)" -eq 0 ] && ! id -u "$BROKER_USER" >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin "$BROKER_USER"
  fi
  TIDEMARK_BROKERS_DIR=$(mktemp -d /tmp/tidemark-brokers.XXXXXX)
  export TIDEMARK_BROKERS_DIR
  local dir=$TIDEMARK_BROKERS_DIR
  mkdir -p "$dir/nats" "$dir/redis" "$dir/rabbitmq/mnesia" "$dir/rabbitmq/log"
  local nats_port redis_port rabbitmq_port dist_port epmd_port
  nats_port=$(_brokers_free_port)
  redis_port=$(_brokers_free_port)
  rabbitmq_port=$(_brokers_free_port)
  dist_port=$(_brokers_free_port)
  epmd_port=$(_brokers_free_port)
  cat >"$dir/env" <<EOF
NATS_PORT=$nats_port
REDIS_PORT=$redis_port
RABBITMQ_PORT=$rabbitmq_port
RABBITMQ_DIST_PORT=$dist_port
RABBITMQ_EPMD_PORT=$epmd_port
RABBITMQ_NODENAME=tidemark-$rabbitmq_port@localhost
EOF
  # RabbitMQ: loopback only, no plugins, guest allowed (loopback), a private cookie.
  cat >"$dir/rabbitmq/rabbitmq.conf" <<EOF
listeners.tcp.1 = 127.0.0.1:$rabbitmq_port
loopback_users.guest = true
disk_free_limit.absolute = 10MB
log.file.level = info
log.console = false
EOF
  echo '[].' >"$dir/rabbitmq/advanced.config"
  echo '[].' >"$dir/rabbitmq/enabled_plugins"
  : >"$dir/rabbitmq/rabbitmq-env.conf"
  python3 -c 'import secrets; print(secrets.token_hex(20), end="")' >"$dir/rabbitmq/.erlang.cookie"
  chmod 400 "$dir/rabbitmq/.erlang.cookie"
  cat >"$dir/broker-ctl" <<EOF
#!/usr/bin/env bash
# Stops or starts one of the test brokers: broker-ctl {nats|rabbitmq|redis} {stop|start}
TIDEMARK_BROKERS_DIR=$dir exec bash $(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/brokers.sh ctl "\$@"
EOF
  chmod 755 "$dir/broker-ctl" "$dir"
  [ "$(id -u)" -eq 0 ] && chown -R "$BROKER_USER" "$dir/nats" "$dir/redis" "$dir/rabbitmq"
  [ "$(id -u)" -eq 0 ] && chmod 400 "$dir/rabbitmq/.erlang.cookie"

  _brokers_add_exit_trap stop_test_brokers
  local name
  for name in nats redis rabbitmq; do
    _brokers_start_one "$name" || return 1
  done
  export TIDEMARK_TEST_NATS_URL="nats://127.0.0.1:$nats_port"
  export TIDEMARK_TEST_AMQP_URL="amqp://guest:guest@127.0.0.1:$rabbitmq_port/%2f"
  export TIDEMARK_TEST_REDIS_URL="redis://127.0.0.1:$redis_port/"
  export TIDEMARK_TEST_BROKER_CTL="$dir/broker-ctl"
  echo "NATS $(nats-server --version | awk '{print $2}') on 127.0.0.1:$nats_port," \
    "Redis $(redis-server --version | awk '{print $3}' | cut -d= -f2) on 127.0.0.1:$redis_port," \
    "RabbitMQ on 127.0.0.1:$rabbitmq_port (data in $dir)"
}

stop_test_brokers() {
  local dir=${TIDEMARK_BROKERS_DIR:-}
  [ -n "$dir" ] && [ -d "$dir" ] || return 0
  local name
  for name in rabbitmq nats redis; do
    _brokers_stop_one "$name" || true
  done
  # The private epmd that RabbitMQ started.
  if [ -f "$dir/env" ]; then
    # shellcheck disable=SC1091
    . "$dir/env"
    ERL_EPMD_PORT=$RABBITMQ_EPMD_PORT epmd -kill >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
}

# Adds a command to the EXIT trap, keeping what is already there (scripts/postgres.sh's).
_brokers_add_exit_trap() {
  local existing
  existing=$(trap -p EXIT | sed -E "s/^trap -- '(.*)' EXIT$/\1/")
  # shellcheck disable=SC2064
  trap "${existing:+$existing; }$1" EXIT
}

if [ "${BASH_SOURCE[0]}" = "$0" ] && [ "${1:-}" = ctl ]; then
  set -euo pipefail
  [ -n "${TIDEMARK_BROKERS_DIR:-}" ] || { echo "TIDEMARK_BROKERS_DIR is not set" >&2; exit 2; }
  case "${3:-}" in
    stop) _brokers_stop_one "${2:-}" ;;
    start) _brokers_start_one "${2:-}" ;;
    *) echo "usage: broker-ctl {nats|rabbitmq|redis} {stop|start}" >&2; exit 2 ;;
  esac
fi
