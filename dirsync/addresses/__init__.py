"""Address forms: proxy addresses, X.400 O/R addresses, IMCEA encapsulation.

Shared by the mappings (template filters), the sync (generated addresses)
and the relay (routing and translation).

Floor 2: imports only the ground floor and :mod:`dirsync.ldif`.
"""
