"""Prevent: the pre-push risk model, its running state over published history, the scan of
outgoing commits and its SARIF output. Light imports only: this runs inside `git push`.
"""
