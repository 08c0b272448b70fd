from index_build.cli import main

raise SystemExit(main())
