"""The measuring harness the stages share: inputs (what `--input` resolves to), timing (the one
run-and-time loop and its statistics), summary (the infer summary's schema), machine (what it
ran on)."""
