"""`python -m samplegan_tune.cli ARGS`: the same as `samplegan-tune ARGS`."""

from samplegan_tune.cli.main import main

raise SystemExit(main())
