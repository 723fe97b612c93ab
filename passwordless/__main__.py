from passwordless.cli import main

raise SystemExit(main())
