"""One module per command (or command group); each defines a click command.

``dirsync.cli.main`` offers every command listed in ``COMMANDS`` (name, module,
attribute) and imports a command's module only when that command runs or
help lists it: ``dirsync export`` does not pay for the scheduler's or the
relay's imports at start-up.
"""

COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("export", "dirsync.cli.commands.export", "export"),
    ("import", "dirsync.cli.commands.importing", "import_"),
    ("diff", "dirsync.cli.commands.diff", "diff"),
    ("check", "dirsync.cli.commands.sync", "check"),
    ("plan", "dirsync.cli.commands.sync", "plan"),
    ("sync", "dirsync.cli.commands.sync", "sync"),
    ("status", "dirsync.cli.commands.sync", "status"),
    ("schedule", "dirsync.cli.commands.schedule", "schedule"),
    ("relay", "dirsync.relay.cli", "relay"),
)
