"""The server's store: one interface (`base`), two databases (`sqlite`, `postgres`), versioned
schema migrations (`migrate`), and task logs kept where the database says (`logfiles`, `logrows`).

The protocol's rules (claims, leases, fencing, diffs, triggers) live once, in the modules above
this package, and run on either database through `base.Conn`.
"""
