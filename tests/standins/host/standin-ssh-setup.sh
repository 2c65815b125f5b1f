#!/bin/sh
# Runs once per boot before sshd (standin-ssh-setup.service):
# * makes this container's own SSH host keys (none are baked into the image);
# * installs the public keys given at `docker run -e SSH_AUTHORIZED_KEYS="..."` (one or
#   more lines) for root and for the sudo user `deploy`. systemd keeps the container's
#   environment to itself, so it is read from PID 1. Without the variable, keys copied in
#   with `docker cp` (to /root/.ssh/authorized_keys) are left as they are.
set -eu
ssh-keygen -A
keys="$(python3 -c '
import sys
with open("/proc/1/environ", "rb") as f:
    for entry in f.read().split(b"\0"):
        name, _, value = entry.partition(b"=")
        if name == b"SSH_AUTHORIZED_KEYS":
            sys.stdout.write(value.decode())
')"
[ -n "$keys" ] || exit 0
for home in /root /home/deploy; do
	owner="$(stat -c %U "$home")"
	install -d -m 0700 -o "$owner" -g "$owner" "$home/.ssh"
	printf '%s\n' "$keys" > "$home/.ssh/authorized_keys"
	chown "$owner:$owner" "$home/.ssh/authorized_keys"
	chmod 0600 "$home/.ssh/authorized_keys"
done
echo "standin-ssh-setup: authorized keys installed for root and deploy"
