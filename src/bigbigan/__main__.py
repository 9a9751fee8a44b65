from bigbigan.cli import main

raise SystemExit(main())
