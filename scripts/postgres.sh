# Starts a private PostgreSQL server for the tests; sourced by scripts/test.
#
#   source scripts/postgres.sh && start_test_postgres   # exports TIDEMARK_TEST_POSTGRES_URL
#
# The cluster is created by initdb in a temporary directory, listens on a free loopback port
# (and a socket in that directory only), runs as a non-root user (PostgreSQL refuses root: as
# root, the `postgres` system user of the Debian package runs it), and is stopped and deleted
# when the calling shell exits. Durability settings are relaxed (fsync off): it holds test
# data only.

pg_bin_dir() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$dir" ] || [ ! -x "$dir/initdb" ]; then
    echo "PostgreSQL server binaries not found under /usr/lib/postgresql (apt-get install postgresql)" >&2
    return 1
  fi
  echo "$dir"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Runs a command as the cluster's owner.
as_pg_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u "$TIDEMARK_PG_OWNER" -- "$@"
  else
    "$@"
  fi
}

start_test_postgres() {
  local bin port
  bin=$(pg_bin_dir)
  port=$(free_port)
  TIDEMARK_PG_OWNER=$(id -un)
  if [ "$(id -u)" -eq 0 ]; then
    TIDEMARK_PG_OWNER=postgres
    id -u postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
  fi
  TIDEMARK_PG_DIR=$(mktemp -d /tmp/tidemark-pg.XXXXXX)
  chmod 755 "$TIDEMARK_PG_DIR"
  [ "$(id -u)" -eq 0 ] && chown "$TIDEMARK_PG_OWNER" "$TIDEMARK_PG_DIR"
  as_pg_owner "$bin/initdb" -D "$TIDEMARK_PG_DIR/data" -U tidemark --auth=trust -E UTF8 \
    --no-instructions >"$TIDEMARK_PG_DIR/initdb.log" 2>&1 || {
      cat "$TIDEMARK_PG_DIR/initdb.log" >&2; return 1; }
  as_pg_owner "$bin/pg_ctl" -D "$TIDEMARK_PG_DIR/data" -l "$TIDEMARK_PG_DIR/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $TIDEMARK_PG_DIR -c max_connections=400 \
        -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
        -c shared_buffers=256MB" start >/dev/null || {
      cat "$TIDEMARK_PG_DIR/server.log" >&2; return 1; }
  TIDEMARK_PG_BIN=$bin
  export TIDEMARK_TEST_POSTGRES_URL="postgres://tidemark@127.0.0.1:$port/postgres"
  trap stop_test_postgres EXIT
  echo "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (data in $TIDEMARK_PG_DIR)"
}

stop_test_postgres() {
  if [ -n "${TIDEMARK_PG_DIR:-}" ] && [ -d "$TIDEMARK_PG_DIR/data" ]; then
    as_pg_owner "$TIDEMARK_PG_BIN/pg_ctl" -D "$TIDEMARK_PG_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$TIDEMARK_PG_DIR"
  fi
}
