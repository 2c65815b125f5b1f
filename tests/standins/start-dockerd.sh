#!/usr/bin/env bash
# Start a Docker engine in the background without systemd (sandboxes, CI machines), the
# way it was verified to work on the project's Debian 12 machines:
#
#     nohup dockerd >/var/log/dockerd.log 2>&1 &
#
# (Debian's docker.io, dockerd 20.10 / API 1.41, overlay2 storage, iptables and the
# default bridge all working). Idempotent: does nothing when `docker info` already works.
# Installs Debian's docker.io and debootstrap first when dockerd is missing (root + apt;
# NO_INSTALL=1 prevents that). If the default start fails, it retries with the vfs
# storage driver, then additionally without iptables (published ports and user-defined
# networks may then not work: the script says so).
#
# Env: DOCKERD_LOG (default /var/log/dockerd.log), DOCKERD_WAIT seconds (default 60).
set -euo pipefail

log_file="${DOCKERD_LOG:-/var/log/dockerd.log}"
wait_s="${DOCKERD_WAIT:-60}"

say() { printf 'start-dockerd: %s\n' "$*"; }
die() { printf 'start-dockerd: error: %s\n' "$*" >&2; exit 1; }

if docker info >/dev/null 2>&1; then
	say "the docker engine is already running"
	exit 0
fi

if ! command -v dockerd >/dev/null 2>&1; then
	[ "${NO_INSTALL:-0}" != 1 ] || die "dockerd is not installed (apt-get install docker.io)"
	[ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 ||
		die "dockerd is not installed and cannot be installed here (needs root and apt-get)"
	say "installing Debian's docker.io and debootstrap"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	apt-get install -y -q docker.io debootstrap
fi
command -v docker >/dev/null 2>&1 || die "no docker CLI on PATH"
[ "$(id -u)" = 0 ] || die "dockerd must be started as root"

# Start dockerd with the given extra flags; succeed once `docker info` answers.
try_start() {
	say "starting: dockerd${*:+ $*} (log: $log_file)"
	nohup dockerd "$@" >>"$log_file" 2>&1 &
	local pid=$! i
	for ((i = 0; i < wait_s * 2; i++)); do
		if docker info >/dev/null 2>&1; then
			say "the docker engine is up (pid $pid): $(docker version --format \
				'server {{.Server.Version}}, API {{.Server.APIVersion}}' 2>/dev/null || true)"
			return 0
		fi
		if ! kill -0 "$pid" 2>/dev/null; then
			say "dockerd exited; last log lines:"
			tail -n 15 "$log_file" >&2 || true
			return 1
		fi
		sleep 0.5
	done
	say "dockerd did not answer within ${wait_s}s; stopping it (pid $pid)"
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	return 1
}

try_start && exit 0
try_start --storage-driver=vfs && exit 0
say "WARNING: falling back to --iptables=false: published ports and user-defined networks may not work"
try_start --storage-driver=vfs --iptables=false && exit 0
die "could not start dockerd; see $log_file"
