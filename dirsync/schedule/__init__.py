"""``dirsync schedule``: triggers, the loop that runs connections on them, and metrics.

Floor 6: imports the ground floor and :mod:`dirsync.state` (locks). It runs
connections through a callable it is given, so it never imports the sync.
"""
