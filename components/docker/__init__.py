"""The Docker target: a deployment as containers, volumes and a network (pulumi-docker),
on a local engine or one reached over SSH."""
