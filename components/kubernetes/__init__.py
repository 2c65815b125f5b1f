"""The Kubernetes target (`target: kubernetes`), on pulumi-kubernetes."""
