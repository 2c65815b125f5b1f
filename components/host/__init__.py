"""The host target: upstream's precompiled `convex-local-backend` binary on a Linux host,
reached over SSH (pulumi-command), run by a hardened systemd unit."""
