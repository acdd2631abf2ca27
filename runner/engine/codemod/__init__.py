"""The codemod step kinds: what Ferry hands to the Codemod CLI (the reference engine) and how it
reads the answer (`delegate`, `output`), and the `shard` step Ferry computes itself (`files`,
`shard`, `owners`)."""
