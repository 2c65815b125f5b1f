"""Pulumi components for a self-hosted Convex deployment."""
