"""One module per command (or command group); each defines a click command.

``dirsync.cli`` attaches every command listed in ``COMMANDS``: the module
must define an attribute of the same name as the command function.
"""

COMMANDS = (
    ("dirsync.commands.export", "export"),
    ("dirsync.commands.importing", "import_"),
    ("dirsync.commands.diff", "diff"),
    ("dirsync.commands.sync", "check"),
    ("dirsync.commands.sync", "plan"),
    ("dirsync.commands.sync", "sync"),
    ("dirsync.commands.sync", "status"),
    ("dirsync.commands.schedule", "schedule"),
    ("dirsync.relay.cli", "relay"),
)
