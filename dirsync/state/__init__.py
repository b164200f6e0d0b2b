"""What dirsync keeps between runs, and who may run now.

- :mod:`.store`: the state store (one SQLite file): entries by anchor, cursors,
  run history;
- :mod:`.fingerprints`: has a file changed since the last run;
- :mod:`.locks`: one run of a connection at a time, across processes;
- :mod:`.runlife`: runs whose process died;
- :mod:`.unconfirmed`: changes a run sent but never saw answered.

Floor 5: imports the ground floor and the floors below (addresses, ldif,
directories, mapping); never the sync that uses it.
"""
