"""Stage 1, index: git access (the only pygit2 importer), the SQLite store, the incremental
indexer, the read API over the index, culprit links and ownership.
"""
