"""Prevent: the pre-push risk scanner. `facts` (per-commit facts from the index), `state`
(running statistics over published history, kept in the index), `model` (the logistic
risk model), `training` (its data and fitting), `pushrange` (which commits a push sends),
`scan` (the assessment and its outputs), `sarif`. Light imports only: this runs inside
`git push` (see docs/architecture.md).
"""
