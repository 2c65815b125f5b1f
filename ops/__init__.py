"""Operator tools, apart from the Pulumi program: backups and restores, upgrades, status,
recovery after an interrupted run, and the admin key CLI. They work on a deployed stack
(its outputs, its state, its backend's admin API), whatever target runs it."""
