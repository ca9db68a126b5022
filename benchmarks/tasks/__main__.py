"""``python -m benchmarks.tasks [run|plot] [--quick] [--out DIR] [--jobs N] [--models ...]``."""

from benchmarks.tasks.experiments import main

raise SystemExit(main())
