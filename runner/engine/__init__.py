"""The engine: the pure scheduler, the executor and the per-task runner that drives runtimes."""
