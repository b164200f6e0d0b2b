import sys

from dirsync.cli import main

sys.exit(main())
