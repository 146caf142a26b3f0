"""Coverage-guided fuzz harnesses of every reader of untrusted checkpoint bytes (see `_harness`)."""
