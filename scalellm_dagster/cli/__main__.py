import sys

from scalellm_dagster.cli.main import main

sys.exit(main())
