"""dirsync: keep an LDAP hub and foreign address books in step.

The package is a house of floors; a module imports only its own floor and
the floors below it (tests/test_architecture.py checks this):

0. the ground floor, plain modules: :mod:`.entry`, :mod:`.errors`,
   :mod:`.schema`, :mod:`.wording`, :mod:`.bundled`, :mod:`.interrupt`,
   :mod:`.escapes`;
1. :mod:`.addresses`: proxy, X.400 and IMCEA addresses, value syntax checks;
2. :mod:`.ldif`: the LDIF format, change records, ``dirsync diff``;
3. :mod:`.directories`: the directory kinds behind one interface;
4. :mod:`.mapping`: mapping files, templates;
5. :mod:`.state`: the state store, fingerprints, locks;
6. :mod:`.schedule`: triggers, the schedule loop, metrics;
7. :mod:`.config`: the configuration file;
8. :mod:`.relay`: the SMTP/X.400 relay;
9. :mod:`.sync`: the engine, one run of a connection;
10. :mod:`.checks`: ``dirsync check``;
11. :mod:`.cli`: the command line;
12. :mod:`.testing`: harnesses for the tests (real slapd, Samba, SMTP).

docs/architecture.md follows a run through them.
"""

__version__ = "0.1.0"
