import sys

from qrdoctor.cli import main

sys.exit(main())
