"""The workflow language: models, loading, validation, `${{ }}` expressions and the graph."""
