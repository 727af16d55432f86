"""`rcahook bisect` and `rcahook verify`: from a ranked list of suspects to a proven culprit.

- space.py: the commits a bisection searches (good..bad, merges walked through, not named)
  and their ancestry;
- prior.py: how likely each of them is, from the ranking;
- plan.py: which revision to test next (weighted bisection), pure;
- run.py: running the user's command and reading its exit code as `git bisect run` does;
- worktree.py: the scratch worktree the command runs in;
- search.py: the loop that ties them together and keeps the chain of evidence;
- suspects.py: the investigation it starts from (live or saved) and the feedback it records;
- session.py: one `rcahook bisect` from the suspects to the report;
- verify.py: reverting a suspect on top of the bad revision and running the command;
- report.py: the result as JSON, text or Markdown, and the `git bisect replay` file.
"""
