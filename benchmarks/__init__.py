"""asv benchmark suites of fastact (see asv.conf.json at the repository root)."""
