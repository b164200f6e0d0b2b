"""Address forms: proxy addresses, X.400 O/R addresses, IMCEA encapsulation,
the RFC 5321 Mailbox grammar (:mod:`.mailbox`), and the syntax checks of
values where foreign data comes in (:mod:`.values`).

Shared by the LDIF reader (value checks), the mappings (template filters),
the sync (generated addresses) and the relay (routing and translation).

Floor 1: imports only the ground floor.
"""
