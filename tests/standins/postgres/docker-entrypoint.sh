#!/usr/bin/env bash
# convex-selfhost TEST STAND-IN for the official postgres image's entrypoint, running
# Debian bookworm's PostgreSQL 15. It keeps the official contract that the deployment
# relies on:
#   POSTGRES_PASSWORD (required unless POSTGRES_HOST_AUTH_METHOD=trust), POSTGRES_USER
#   (default postgres), POSTGRES_DB (default: the user), PGDATA (default
#   /var/lib/postgresql/data), POSTGRES_INITDB_ARGS, POSTGRES_HOST_AUTH_METHOD (default
#   scram-sha-256), /docker-entrypoint-initdb.d/*.sh|*.sql|*.sql.gz.
# First start with an empty PGDATA: initdb, then a temporary server listening only on
# the unix socket creates the database and runs the init scripts, is stopped, and the
# real server is exec'd in the foreground as user postgres (so SIGINT/SIGTERM reach it).
set -Eeuo pipefail

log() { printf '%s convex-postgres-standin: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*"; }
die() { log "ERROR: $*" >&2; exit 1; }

# `docker run image -c foo=bar` means `postgres -c foo=bar`, as upstream.
if [ "${1:0:1}" = '-' ]; then
	set -- postgres "$@"
fi

export PGDATA="${PGDATA:-/var/lib/postgresql/data}"
export POSTGRES_USER="${POSTGRES_USER:-postgres}"
export POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"
export POSTGRES_HOST_AUTH_METHOD="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"

if [ "$1" != 'postgres' ]; then
	exec "$@"
fi

if [ "$(id -u)" = '0' ]; then
	mkdir -p "$PGDATA" /var/run/postgresql
	chown postgres:postgres /var/run/postgresql
	chmod 3777 /var/run/postgresql
	# Only a fresh directory is re-owned, like upstream's find ... -exec chown.
	find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' + 2>/dev/null || true
	chmod 00700 "$PGDATA" 2>/dev/null || true
	exec setpriv --reuid=postgres --regid=postgres --init-groups "$BASH_SOURCE" "$@"
fi

process_init_file() {
	local f="$1"
	case "$f" in
		*.sh)
			if [ -x "$f" ]; then log "running $f"; "$f"
			else log "sourcing $f"; . "$f"; fi ;;
		*.sql)    log "running $f"; psql_init -f "$f" ;;
		*.sql.gz) log "running $f"; gunzip -c "$f" | psql_init ;;
		*)        log "ignoring $f" ;;
	esac
}

psql_init() {
	psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc \
		--dbname "$POSTGRES_DB" "$@"
}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
	if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != 'trust' ]; then
		die "Database is uninitialized and superuser password is not specified.
       You must specify POSTGRES_PASSWORD to a non-empty value for the
       superuser. For example, \"-e POSTGRES_PASSWORD=password\" on \"docker run\"."
	fi
	log "initializing database cluster in $PGDATA (PostgreSQL $(postgres -V | awk '{print $3}'))"
	pwfile=/dev/null
	if [ -n "${POSTGRES_PASSWORD:-}" ]; then
		pwfile="$(mktemp)"
		printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
	fi
	# shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is split on purpose, as upstream
	# No --auth flags, as upstream: initdb's default pg_hba.conf trusts the Unix socket and
	# loopback (127.0.0.1, ::1) inside the container; other hosts get the line below.
	initdb --username="$POSTGRES_USER" ${POSTGRES_PASSWORD:+--pwfile="$pwfile"} \
		${POSTGRES_INITDB_ARGS:-}
	[ "$pwfile" = /dev/null ] || rm -f "$pwfile"
	{
		printf '\n# convex-selfhost stand-in: like the official image\n'
		printf "listen_addresses = '*'\n"
		printf "password_encryption = 'scram-sha-256'\n"
	} >> "$PGDATA/postgresql.conf"
	printf '\nhost all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD" >> "$PGDATA/pg_hba.conf"

	log "starting a temporary server on the unix socket only"
	PGUSER="$POSTGRES_USER" pg_ctl -D "$PGDATA" -w -o "-c listen_addresses='' -p 5432" start
	if [ "$POSTGRES_DB" != 'postgres' ]; then
		# psql interpolates :"db" / :'db' in its input, not in -c, hence the pipes.
		exists="$(printf '%s\n' "SELECT 1 FROM pg_database WHERE datname = :'db';" |
			POSTGRES_DB=postgres psql_init -tA -v db="$POSTGRES_DB")"
		if [ -z "$exists" ]; then
			log "creating database $POSTGRES_DB"
			printf '%s\n' 'CREATE DATABASE :"db";' |
				POSTGRES_DB=postgres psql_init -v db="$POSTGRES_DB"
		fi
	fi
	if [ -d /docker-entrypoint-initdb.d ]; then
		for f in /docker-entrypoint-initdb.d/*; do
			[ -e "$f" ] && process_init_file "$f"
		done
	fi
	PGUSER="$POSTGRES_USER" pg_ctl -D "$PGDATA" -m fast -w stop
	log "PostgreSQL init process complete; ready for start up."
else
	log "PostgreSQL database directory appears to contain a database; skipping initialization"
fi

exec "$@"
