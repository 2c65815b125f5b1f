#!/usr/bin/env bash
# Build convex-selfhost's TEST STAND-IN images, tagged with the real images' names, so a
# Pulumi program (whose docker provider uses a local image when present) finds them
# without any registry. See tests/standins/README.md.
#
# Usage: tests/standins/build.sh [BACKEND_TAG ...]
#   BACKEND_TAG  backend/dashboard tags to build (default: the two pinned versions below)
#   FORCE=1      rebuild stand-ins that already exist (real images are never overwritten)
#   DEBIAN_MIRROR=URL  mirror for debootstrap (default: read from this machine's apt)
#   SKIP_CADDY=1 / SKIP_POSTGRES=1 / SKIP_HOST=1  leave those stand-ins out
#
# Needs: docker (a running engine), debootstrap (for the base image only), and python3
# with pip on the host (to download the cryptography wheels from PyPI for the backend).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
DEFAULT_TAGS="652b828b5129e6cdbcaa3c20efa8d116d09ff3bf 4d3b0a5de955a258e70e3813bbff486051d88820"
BASE_IMAGE="convex-standin-base:bookworm"
DESCRIPTION="convex-selfhost test stand-in (not the real image)"
DESC_LABEL="org.opencontainers.image.description"
RECIPE_LABEL="org.convex-selfhost.standin.recipe"
# Installed into the base (the debootstrap chroot): everything the stand-ins need.
BASE_INCLUDE="python3,curl,ca-certificates"
BASE_PACKAGES="python3-pip postgresql-15 postgresql-client-15 caddy"
FORCE="${FORCE:-0}"
export DOCKER_BUILDKIT=0  # the classic builder uses local base images and needs no buildx

say() { printf '==> %s\n' "$*"; }
die() { printf 'build.sh: error: %s\n' "$*" >&2; exit 1; }

command -v docker >/dev/null 2>&1 || die "docker is not installed (the CLI is needed)"
docker info >/dev/null 2>&1 ||
	die "the docker engine is not reachable ('docker info' fails); start it, e.g. tests/standins/start-dockerd.sh"

# sha256 of this script's base recipe plus the given files: stored as a label so an
# existing stand-in built from other sources is rebuilt.
recipe_of() {
	{
		printf '%s\n' "$BASE_INCLUDE" "$BASE_PACKAGES"
		for f in "$@"; do cat "$f"; done
	} | sha256sum | cut -c1-16
}
BASE_RECIPE="$(recipe_of)"

ROOT="" WORK=""
cleanup() {
	if [ -n "$ROOT" ]; then
		umount -l "$ROOT/proc" 2>/dev/null || true
		rm -rf "$ROOT"
	fi
	if [ -n "$WORK" ]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT

label_of() { # image label
	docker image inspect --format "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true
}

# Whether to build image $1 whose recipe is $2: sets WHY, or says why not and returns 1.
WHY=""
needs_build() {
	local image="$1" recipe="$2"
	if ! docker image inspect "$image" >/dev/null 2>&1; then
		WHY="missing"
		return 0
	fi
	if [ "$(label_of "$image" "$DESC_LABEL")" != "$DESCRIPTION" ]; then
		say "skip $image: a non-stand-in image has that tag; not overwriting it (docker rmi it first)"
		return 1
	fi
	if [ "$FORCE" = 1 ]; then
		WHY="FORCE=1"
		return 0
	fi
	if [ "$(label_of "$image" "$RECIPE_LABEL")" != "$recipe" ]; then
		WHY="its sources changed"
		return 0
	fi
	say "skip $image: up to date"
	return 1
}

# The first bookworm mirror (or, with $1=security, the bookworm-security one) apt uses.
apt_mirror() {
	local suite="bookworm"
	[ "${1:-}" = security ] && suite="bookworm-security"
	local files=() f
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] && files+=("$f")
	done
	[ "${#files[@]}" -gt 0 ] || return 0
	local uri=""
	# one-line style: deb [opts] URI SUITE COMPONENTS
	uri="$(awk -v s="$suite" '$1 == "deb" { i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
		if ($(i + 1) == s) { print $i; exit } }' "${files[@]}" 2>/dev/null || true)"
	if [ -z "$uri" ]; then
		# deb822 style: a paragraph whose Suites: lists the suite
		uri="$(awk -v s="$suite" 'BEGIN { RS = ""; FS = "\n" }
			{ u = ""; ok = 0; deb = 0
			  for (i = 1; i <= NF; i++) {
			    if ($i ~ /^Types:/ && $i ~ /[ \t]deb([ \t]|$)/) deb = 1
			    if ($i ~ /^URIs:/) { split($i, a, /[ \t]+/); u = a[2] }
			    if ($i ~ /^Suites:/) { n = split($i, b, /[ \t]+/); for (j = 2; j <= n; j++) if (b[j] == s) ok = 1 }
			  }
			  if (ok && deb && u != "") { print u; exit } }' "${files[@]}" 2>/dev/null || true)"
	fi
	printf '%s' "$uri"
}

build_base() {
	if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 && [ "$FORCE" != 1 ] &&
		[ "$(label_of "$BASE_IMAGE" "$RECIPE_LABEL")" = "$BASE_RECIPE" ]; then
		say "skip $BASE_IMAGE: up to date"
		return
	fi
	command -v debootstrap >/dev/null 2>&1 ||
		die "debootstrap is not installed (apt-get install debootstrap); it builds $BASE_IMAGE"
	[ "$(id -u)" = 0 ] || die "building $BASE_IMAGE with debootstrap needs root"
	local mirror security
	mirror="${DEBIAN_MIRROR:-$(apt_mirror)}"
	mirror="${mirror:-http://deb.debian.org/debian}"
	security="$(apt_mirror security)"
	say "build $BASE_IMAGE: debootstrap --variant=minbase bookworm from $mirror"
	local root
	root="$(mktemp -d /tmp/convex-standin-root.XXXXXX)"
	ROOT="$root"
	chmod 0755 "$root"  # it becomes the image's /: mktemp's 0700 would lock out non-root users
	local log="$WORK/base.log"
	say "  (debootstrap and apt output: $log, shown on failure)"
	debootstrap --variant=minbase --include="$BASE_INCLUDE" bookworm "$root" "$mirror" \
		>"$log" 2>&1 || { tail -n 40 "$log" >&2; die "debootstrap failed (output above)"; }
	{
		echo "deb $mirror bookworm main"
		echo "deb $mirror bookworm-updates main"
		if [ -n "$security" ]; then echo "deb $security bookworm-security main"; fi
	} > "$root/etc/apt/sources.list"
	# No services start inside the chroot, and no "main" cluster is created: the
	# postgres stand-in's entrypoint runs initdb itself, like the official image.
	printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
	chmod 0755 "$root/usr/sbin/policy-rc.d"
	mkdir -p "$root/etc/postgresql-common"
	echo "create_main_cluster = false" > "$root/etc/postgresql-common/createcluster.conf"
	mount -t proc proc "$root/proc"
	say "install into $BASE_IMAGE: $BASE_PACKAGES"
	# shellcheck disable=SC2086
	{
		chroot "$root" /usr/bin/env DEBIAN_FRONTEND=noninteractive LC_ALL=C apt-get update -q &&
		chroot "$root" /usr/bin/env DEBIAN_FRONTEND=noninteractive LC_ALL=C apt-get install -y -q \
			--no-install-recommends -o Dpkg::Options::=--force-confold $BASE_PACKAGES &&
		chroot "$root" apt-get clean
	} >>"$log" 2>&1 || { tail -n 40 "$log" >&2; die "installing into the base failed (output above)"; }
	umount "$root/proc"
	rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root/usr/sbin/policy-rc.d"
	say "import $BASE_IMAGE"
	tar -C "$root" -c . | docker import \
		--change "LABEL $DESC_LABEL=\"$DESCRIPTION\"" \
		--change "LABEL $RECIPE_LABEL=$BASE_RECIPE" \
		--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
		--change 'ENV LANG=C.UTF-8' \
		--change 'CMD ["/bin/bash"]' \
		- "$BASE_IMAGE" >/dev/null
	rm -rf "$root"
	ROOT=""
}

# docker build of $1 (a directory here) into a context that may get extra files; the
# remaining arguments go to docker build.
docker_build() {
	local ctx="$1" log prev="" arg old=() id
	shift
	# Stand-ins the -t tags named before: removed below once nothing names them any more.
	for arg in "$@"; do
		if [ "$prev" = -t ]; then
			id="$(docker image inspect --format '{{.Id}}' "$arg" 2>/dev/null || true)"
			[ -n "$id" ] && old+=("$id")
		fi
		prev="$arg"
	done
	log="$(mktemp "$WORK/build-log.XXXXXX")"
	if ! docker build --label "$DESC_LABEL=$DESCRIPTION" "$@" "$ctx" >"$log" 2>&1; then
		tail -n 40 "$log" >&2
		die "docker build of $ctx failed (output above)"
	fi
	for id in "${old[@]}"; do
		if [ -z "$(docker image inspect --format '{{join .RepoTags ""}}' "$id" 2>/dev/null)" ]; then
			docker rmi "$id" >/dev/null 2>&1 || true  # still used by a container: keep it
		fi
	done
}

WHEELS=""
download_wheels() {
	[ -n "$WHEELS" ] && return
	local pip=""
	if python3 -m pip --version >/dev/null 2>&1; then pip="python3 -m pip"
	elif command -v pip3 >/dev/null 2>&1; then pip="pip3"
	else die "pip is needed on the host to download the cryptography wheels (apt-get install python3-pip)"; fi
	WHEELS="$WORK/wheels"
	mkdir -p "$WHEELS"
	say "download cryptography wheels for Python 3.11 (bookworm) from PyPI"
	# shellcheck disable=SC2086
	$pip download --quiet --disable-pip-version-check --only-binary=:all: \
		--python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none \
		--platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
		--platform manylinux_2_34_x86_64 --platform any \
		-d "$WHEELS" 'cryptography>=42' cffi pycparser ||
		die "could not download the cryptography wheels from PyPI"
}

build_backend() {
	local tag="$1" image="ghcr.io/get-convex/convex-backend:$1" recipe
	recipe="$(recipe_of "$HERE/backend/Dockerfile" "$HERE/backend/server.py")"
	needs_build "$image" "$recipe" || return 0
	download_wheels
	say "build $image ($WHY)"
	local ctx="$WORK/backend-$tag"
	mkdir -p "$ctx"
	cp "$HERE/backend/Dockerfile" "$HERE/backend/server.py" "$ctx/"
	cp -r "$WHEELS" "$ctx/wheels"
	docker_build "$ctx" --label "$RECIPE_LABEL=$recipe" \
		--build-arg "STANDIN_VERSION=$tag" -t "$image"
}

build_dashboard() {
	local tag="$1" image="ghcr.io/get-convex/convex-dashboard:$1" recipe
	recipe="$(recipe_of "$HERE/dashboard/Dockerfile" "$HERE/dashboard/server.py")"
	needs_build "$image" "$recipe" || return 0
	say "build $image ($WHY)"
	docker_build "$HERE/dashboard" --label "$RECIPE_LABEL=$recipe" \
		--build-arg "STANDIN_VERSION=$tag" -t "$image"
}

build_postgres() {
	local recipe tags=() image
	recipe="$(recipe_of "$HERE/postgres/Dockerfile" "$HERE/postgres/docker-entrypoint.sh")"
	for image in postgres:17.6-alpine postgres:17-standin; do
		if needs_build "$image" "$recipe"; then
			say "build $image ($WHY)"
			tags+=(-t "$image")
		fi
	done
	[ "${#tags[@]}" -gt 0 ] || return 0
	docker_build "$HERE/postgres" --label "$RECIPE_LABEL=$recipe" "${tags[@]}"
}

build_caddy() {
	local image="caddy:2.10.2-alpine" recipe
	recipe="$(recipe_of "$HERE/caddy/Dockerfile")"
	needs_build "$image" "$recipe" || return 0
	say "build $image ($WHY; Debian's caddy $(docker run --rm "$BASE_IMAGE" \
		dpkg-query -W -f '${Version}' caddy 2>/dev/null || echo '?'))"
	docker_build "$HERE/caddy" --label "$RECIPE_LABEL=$recipe" -t "$image"
}

# The systemd + sshd test host for the host target (tests/standins/host/README.md). Unlike
# the others it runs apt-get inside docker build (systemd and openssh-server).
HOST_IMAGE="convex-standin-host:bookworm"
HOST_FILES="Dockerfile sshd-standin.conf standin-ssh-setup.sh standin-ssh-setup.service"
build_host() {
	local recipe f files=()
	for f in $HOST_FILES; do files+=("$HERE/host/$f"); done
	recipe="$(recipe_of "${files[@]}")"
	needs_build "$HOST_IMAGE" "$recipe" || return 0
	download_wheels
	say "build $HOST_IMAGE ($WHY; apt-get installs systemd and openssh-server)"
	local ctx="$WORK/host"
	mkdir -p "$ctx"
	cp "${files[@]}" "$ctx/"
	cp -r "$WHEELS" "$ctx/wheels"
	docker_build "$ctx" --label "$RECIPE_LABEL=$recipe" -t "$HOST_IMAGE"
}

build_python() {
	local image="python:3.12.7-slim-bookworm" recipe
	recipe="$(recipe_of "$HERE/python/Dockerfile")"
	needs_build "$image" "$recipe" || return 0
	say "build $image ($WHY; Debian's python3)"
	docker_build "$HERE/python" --label "$RECIPE_LABEL=$recipe" -t "$image"
}

if [ "$#" -gt 0 ]; then TAGS=("$@"); else read -r -a TAGS <<< "$DEFAULT_TAGS"; fi
for tag in "${TAGS[@]}"; do
	[[ "$tag" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "not a docker tag: $tag"
done

WORK="$(mktemp -d /tmp/convex-standin-build.XXXXXX)"
build_base
for tag in "${TAGS[@]}"; do
	build_backend "$tag"
	build_dashboard "$tag"
done
[ "${SKIP_POSTGRES:-0}" = 1 ] || build_postgres
[ "${SKIP_CADDY:-0}" = 1 ] || build_caddy
[ "${SKIP_PYTHON:-0}" = 1 ] || build_python
[ "${SKIP_HOST:-0}" = 1 ] || build_host

say "stand-in images:"
docker images --filter "label=$DESC_LABEL=$DESCRIPTION" --filter dangling=false \
	--format '{{.Repository}}:{{.Tag}}  {{.ID}}  {{.Size}}' | sed 's/^/    /'
