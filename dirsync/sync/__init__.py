"""The sync engine: one run of a connection, in either direction.

The pipeline is read, map, compare by anchor, plan, check safety, apply in
phases, record state as the target confirms, report (docs/architecture.md).

Floor 9: imports every floor below (ground, addresses, ldif, directories,
mapping, state, schedule, config, relay); never :mod:`dirsync.checks` or
:mod:`dirsync.cli`.
"""
