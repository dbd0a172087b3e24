#!/usr/bin/env bash
# One command from a fresh clone to a running Taskjet on a Debian/Ubuntu machine (`npm run up`):
# installs nats-server if missing, installs and builds the workspace, runs `taskjet dev --example` in the
# foreground, and once it is up triggers a sample run and prints where to look. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/../.."
root="$(pwd)"
say() { printf '\n==> %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    echo "error: '$*' needs root, and sudo is not available: run it as root, then run this script again" >&2
    exit 1
  fi
}

if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: nats-server is missing and this is not a Debian/Ubuntu machine (no apt-get)." >&2
    echo "Download it from https://github.com/nats-io/nats-server/releases and put it on PATH." >&2
    exit 1
  fi
  say "installing nats-server (apt-get)"
  as_root apt-get update
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y nats-server
fi

if ! command -v node >/dev/null 2>&1; then
  echo "error: Node.js 20.19 or newer is needed (https://nodejs.org/en/download)" >&2
  exit 1
fi

if [ ! -d node_modules ]; then
  say "installing dependencies (npm ci)"
  npm ci --no-audit --no-fund
fi

say "building (turbo run build)"
npx turbo run build

taskjet=(node "$root/cli/dist/bin.js")
dev_json="$root/.taskjet/dev.json"
marker="$(mktemp)"
dev_pid=$$ # `taskjet dev` takes this process over (exec, below), so signals sent to it reach taskjet dev

# Once `taskjet dev` is up (it writes dev.json last), trigger a sample run against it and say where to look.
(
  # A background job of a script ignores Ctrl-C: it ends when taskjet dev is up, or gone.
  for _ in $(seq 1 600); do
    [ -f "$dev_json" ] && [ "$dev_json" -nt "$marker" ] && break
    kill -0 "$dev_pid" 2>/dev/null || break
    sleep 0.1
  done
  rm -f "$marker"
  kill -0 "$dev_pid" 2>/dev/null || exit 0
  if [ ! -f "$dev_json" ]; then
    echo "up.sh: taskjet dev did not come up within 60 s; see its output above" >&2
    exit 0
  fi
  url="$(node -e 'process.stdout.write(JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).url)' "$dev_json")"
  http="$(node -e 'process.stdout.write(JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).http ?? "")' "$dev_json")"
  run_id="sample-$(date +%s)"
  say "sample run: taskjet trigger hello --input '{\"name\":\"world\"}' --wait"
  if "${taskjet[@]}" trigger hello --input '{"name":"world"}' --wait --run-id "$run_id" --nats "$url"; then
    cat <<MSG

==> Taskjet is up. Where to look, from another shell in $root:
  alias taskjet="node $root/cli/dist/bin.js"
  taskjet runs list
  taskjet runs get $run_id
  taskjet runs history $run_id
  taskjet trigger slow --input '{"ms":2000}'
  taskjet trigger fail --wait
(Commands run in $root find this server through .taskjet/dev.json; elsewhere: export TASKJET_NATS_URL=$url)
MSG
    # One token for this script, made anew at each start: the one printed last time (shown once, so unknown now)
    # is revoked rather than left valid beside it.
    "${taskjet[@]}" tokens revoke npm-run-up --nats "$url" >/dev/null 2>&1 || true
    if token="$("${taskjet[@]}" tokens create --name npm-run-up --nats "$url" 2>/dev/null)"; then
      where="http://$http/dashboard/"
      [ -n "$http" ] || where="/dashboard/ on the HTTP address printed above"
      cat <<MSG
==> Dashboard: $where
    sign in with this API token (shown once): $token
MSG
    fi
    cat <<MSG
Ctrl-C here stops the worker, the engine and nats-server.

MSG
  fi
) &

say "starting taskjet dev --example (Ctrl-C to stop)"
exec "${taskjet[@]}" dev --example
