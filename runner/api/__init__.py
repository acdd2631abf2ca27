"""The wire: control-plane protocol v1 bodies, the HTTP client and the one retry rule.

A leaf package: it imports only `runner.errors`. Runner, server and CLI all speak through it.
"""
