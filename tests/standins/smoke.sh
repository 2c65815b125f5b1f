#!/usr/bin/env bash
# Smoke-test the stand-in images built by build.sh: run each on loopback ports and on a
# user-defined network, check what the deployment relies on, clean up after itself.
# Usage: tests/standins/smoke.sh [BACKEND_TAG]   (needs docker, curl, psql, python3 with
# cryptography >= 42 on the host). Prints "N passed, N failed".
set -uo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
TAG="${1:-652b828b5129e6cdbcaa3c20efa8d116d09ff3bf}"
P="convex-standin-smoke-$$"
NET="$P-net"
SECRET="$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
passed=0 failed=0

ok() { printf 'ok   %s\n' "$1"; passed=$((passed + 1)); }
bad() { printf 'FAIL %s\n' "$1"; failed=$((failed + 1)); }
check() { # description, command...
	local what="$1"
	shift
	if "$@" >/dev/null 2>&1; then ok "$what"; else bad "$what"; fi
}
cleanup() {
	docker rm -f -v "$P-backend" "$P-backend2" "$P-pg" "$P-dash" "$P-caddy" >/dev/null 2>&1
	docker volume rm "$P-data" "$P-pgdata" >/dev/null 2>&1
	docker network rm "$NET" >/dev/null 2>&1
}
trap cleanup EXIT
wait_for() { # seconds, command...
	local n="$1" i
	shift
	for ((i = 0; i < n * 4; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.25; done
	return 1
}

docker network create "$NET" >/dev/null

# --- backend
docker run -d --name "$P-backend" --network "$NET" --network-alias convex-backend \
	-e INSTANCE_NAME=convex-dev -e INSTANCE_SECRET="$SECRET" -v "$P-data:/convex/data" \
	-p 127.0.0.1::3210 "ghcr.io/get-convex/convex-backend:$TAG" >/dev/null
api="http://$(docker port "$P-backend" 3210/tcp | head -1)"
check "backend answers /version with its tag" wait_for 20 sh -c "[ \"\$(curl -fsS $api/version)\" = '$TAG' ]"
check "backend healthcheck command works inside the container" \
	docker exec "$P-backend" curl -f http://localhost:3210/version
keys="$(INSTANCE_SECRET="$SECRET" python3 - "$HERE/test_standin_backend.py" <<'EOF'
import importlib.util, os, sys
spec = importlib.util.spec_from_file_location("standin_keys", sys.argv[1])
m = importlib.util.module_from_spec(spec); sys.modules[spec.name] = m; spec.loader.exec_module(m)
key = m.member_key(os.environ["INSTANCE_SECRET"])
print(key, m.tampered(key))
EOF
)"
good="${keys% *}" tampered="${keys#* }"
code() { curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Convex $1" "$api/api/check_admin_key"; }
check "check_admin_key accepts a valid key (200)" test "$(code "$good")" = 200
check "check_admin_key rejects a tampered key (401)" test "$(code "$tampered")" = 401
check "backend logs a fresh data directory" sh -c "docker logs $P-backend | grep -q 'is FRESH'"
docker stop "$P-backend" >/dev/null
check "backend stops cleanly on SIGTERM" test "$(docker inspect -f '{{.State.ExitCode}}' "$P-backend")" = 0
docker run -d --name "$P-backend2" -e INSTANCE_NAME=convex-dev -e INSTANCE_SECRET="$SECRET" \
	-v "$P-data:/convex/data" --stop-signal SIGINT "ghcr.io/get-convex/convex-backend:$TAG" >/dev/null
check "backend logs an existing data directory" \
	wait_for 10 sh -c "docker logs $P-backend2 | grep -q 'is EXISTING'"
docker stop "$P-backend2" >/dev/null
check "backend stops cleanly on SIGINT" test "$(docker inspect -f '{{.State.ExitCode}}' "$P-backend2")" = 0
check "backend refuses to start without INSTANCE_SECRET" \
	sh -c "! docker run --rm -e INSTANCE_NAME=x ghcr.io/get-convex/convex-backend:$TAG"
docker rm -f "$P-backend" >/dev/null
docker run -d --name "$P-backend" --network "$NET" --network-alias convex-backend \
	-e INSTANCE_NAME=convex-dev -e INSTANCE_SECRET="$SECRET" "ghcr.io/get-convex/convex-backend:$TAG" >/dev/null

# --- postgres
docker run -d --name "$P-pg" --network "$NET" --network-alias postgres -p 127.0.0.1::5432 \
	-e POSTGRES_USER=convex -e POSTGRES_PASSWORD=pw-$$ -e POSTGRES_DB=convex_dev \
	-v "$P-pgdata:/var/lib/postgresql/data" postgres:17.6-alpine >/dev/null
pgport="$(docker port "$P-pg" 5432/tcp | head -1)"
pgport="${pgport##*:}"
check "postgres becomes ready (pg_isready in the container)" \
	wait_for 60 docker exec "$P-pg" pg_isready -h 127.0.0.1 -U convex -d convex_dev
check "psql from the host with the password" \
	env PGPASSWORD="pw-$$" psql -h 127.0.0.1 -p "$pgport" -U convex -d convex_dev -Atc 'select 1'
check "psql with a wrong password is refused" \
	sh -c "! PGPASSWORD=wrong psql -h 127.0.0.1 -p $pgport -U convex -d convex_dev -Atc 'select 1'"
check "psql from another container on the network" docker run --rm --network "$NET" \
	-e PGPASSWORD="pw-$$" postgres:17.6-alpine psql -h postgres -U convex -d convex_dev -Atc 'select 1'

# --- dashboard
docker run -d --name "$P-dash" --network "$NET" --network-alias convex-dashboard -p 127.0.0.1::6791 \
	-e NEXT_PUBLIC_DEPLOYMENT_URL=http://127.0.0.1:3210 \
	"ghcr.io/get-convex/convex-dashboard:$TAG" >/dev/null
dash="http://$(docker port "$P-dash" 6791/tcp | head -1)"
check "dashboard answers 200 naming the deployment URL" \
	wait_for 20 sh -c "curl -fsS $dash/some/page | grep -q 'http://127.0.0.1:3210'"

# --- caddy (only when built)
if docker image inspect caddy:2.10.2-alpine >/dev/null 2>&1; then
	docker create --name "$P-caddy" --network "$NET" -p 127.0.0.1::80 caddy:2.10.2-alpine >/dev/null
	printf 'http://api.convex.test {\n\treverse_proxy convex-backend:3210\n}\n' > "/tmp/$P-Caddyfile"
	docker cp "/tmp/$P-Caddyfile" "$P-caddy:/etc/caddy/Caddyfile" && rm -f "/tmp/$P-Caddyfile"
	docker start "$P-caddy" >/dev/null
	caddy="http://$(docker port "$P-caddy" 80/tcp | head -1)"
	check "caddy reverse-proxies to the backend over the network" wait_for 20 \
		sh -c "[ \"\$(curl -fsS -H 'Host: api.convex.test' $caddy/version)\" = '$TAG' ]"
fi

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
