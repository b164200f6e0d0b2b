import sys

from dirsync.cli.main import main

sys.exit(main())
