"""LDIF (RFC 2849) as a format, and the tools that work on LDIF alone.

- :mod:`.changes`: change records and the attribute-level diff of two entries;
- :mod:`.controls`: the ``control:`` lines of change records;
- :mod:`.io`: the reader and the writer (python-ldap's ``ldif`` underneath);
- :mod:`.fastread`: the reader's fast path for plain content records;
- :mod:`._ldifstream` (``_ldifstream.c``): search results written as LDIF in C;
- :mod:`.extsort`: external sort of entry streams by a hierarchical DN key;
- :mod:`.diff`, :mod:`.diffhtml`: ``dirsync diff`` and its HTML page;
- :mod:`.htmlreport`: the HTML pieces shared with the sync report.

- :mod:`.urlvalues`: ``attr:< URL`` values, refused unless allowed.

Floor 2: imports only the ground floor (``dirsync.entry``, ``errors``,
``schema``, ``wording``, ``bundled``, ``interrupt``, ``escapes``) and
:mod:`dirsync.addresses` (the value checks a reader applies).
"""
