from s3l_core.cli import main

raise SystemExit(main())
