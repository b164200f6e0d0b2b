"""Mappings: how a foreign entry becomes a hub entry, and a hub recipient a foreign one.

- :mod:`.mapfile`: a mapping file, loaded and compiled, and its import half;
- :mod:`.exportmap`: its ``[export]`` half;
- :mod:`.exportnames`: the names exported recipients get in a foreign directory;
- :mod:`.templates`, :mod:`.textfilters`: the sandboxed templates and their filters;
- :mod:`.templatebudget`, :mod:`.templatelimits`: what a template may spend, and the checks.

Floor 4: imports the ground floor, :mod:`dirsync.addresses`, :mod:`dirsync.ldif`
and :mod:`dirsync.directories`. Pure: no I/O beyond reading the mapping file.
"""
