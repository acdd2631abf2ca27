"""Secrets: their values (checked), where workflows declare them, and their masking in output.

Every path that carries step output or text derived from it (log files, the journal, the
control plane's logs, events, error messages, outputs) passes through a `Masker` built from the
run's secret values; see `runner.secrets.masker` for what is masked and its limits.
"""
