"""The daemon side: the claim loop, one job per claimed run, leases, health, systemd."""
