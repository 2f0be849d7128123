from nexios.cli import main

raise SystemExit(main())
