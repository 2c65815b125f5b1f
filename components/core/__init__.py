"""What a Convex deployment is, independent of where it runs.

`spec.describe` turns validated settings into one `DeploymentSpec` per deployment;
`backend` computes the backend's environment (as upstream's image reads it) and its
command line (as upstream's run_backend.sh builds it for the binary); `keys` derives the
admin keys and `.env.local`. Each target (components/docker, components/host) turns a spec
into its own resources and exports the same outputs.
"""
