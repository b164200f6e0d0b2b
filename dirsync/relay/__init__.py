"""The companion relay: SMTP to and from foreign systems through the hub.

The package is split the way aiosmtpd splits a server (STYLE.md item 9):

* protocol -- :mod:`.protocol` (aiosmtpd's SMTP with RFC 3461 DSN parameters)
  and :mod:`.dsn` (the parameters themselves);
* handler -- :mod:`.handler`, which only answers the SMTP hooks with reply
  codes and puts accepted mail in the queue;
* queueing and delivery -- :mod:`.queue` (durable, fsynced), :mod:`.scheduler`
  (retries), :mod:`.delivery` (one attempt at one message), the next hops
  :mod:`.smtp_hop` and :mod:`.gateway` (X.400 gateway directories), and the
  inbound :mod:`.pickup`;
* addressing -- :mod:`.addresses`, :mod:`.hub` (lookups), :mod:`.translate`
  and :mod:`.routing` (address spaces);
* reports and records -- :mod:`.reports` (RFC 3464) and :mod:`.tracking`;
* wiring -- :mod:`.config`, :mod:`.server` and :mod:`.cli`.

The address forms themselves live in :mod:`dirsync.addresses`.

Floor 8: imports the ground floor, :mod:`dirsync.addresses`,
:mod:`dirsync.ldif` and :mod:`dirsync.directories` (the hub lookups);
never the sync.
"""
