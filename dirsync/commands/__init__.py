"""One module per command (or command group); each defines a click command.

``dirsync.cli`` offers every command listed in ``COMMANDS`` (name, module,
attribute) and imports a command's module only when that command runs or
help lists it: ``dirsync export`` does not pay for the scheduler's or the
relay's imports at start-up.
"""

COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("export", "dirsync.commands.export", "export"),
    ("import", "dirsync.commands.importing", "import_"),
    ("diff", "dirsync.commands.diff", "diff"),
    ("check", "dirsync.commands.sync", "check"),
    ("plan", "dirsync.commands.sync", "plan"),
    ("sync", "dirsync.commands.sync", "sync"),
    ("status", "dirsync.commands.sync", "status"),
    ("schedule", "dirsync.commands.schedule", "schedule"),
    ("relay", "dirsync.relay.cli", "relay"),
)
