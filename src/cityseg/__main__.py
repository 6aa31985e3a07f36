from cityseg.cli import main

raise SystemExit(main())
