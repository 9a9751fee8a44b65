from bigbigan.cli.main import main

raise SystemExit(main())
