"""The command line: a thin layer of click commands over the library.

:mod:`.main` is the entry point (``dirsync`` and ``python -m dirsync``);
:mod:`.commands` holds one module per command. The top floor: it may import
any other floor, and nothing but :mod:`dirsync.__main__` imports it.
"""
