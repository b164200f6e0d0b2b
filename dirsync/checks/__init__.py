"""``dirsync check``: the config, the mappings, every directory and container, in one pass.

Floor 10: imports every floor below, the sync included (it asks the engine
what a first run would create); only :mod:`dirsync.cli` imports it.
"""
