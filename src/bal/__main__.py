import sys

from bal.cli import main

sys.exit(main())
