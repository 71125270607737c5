"""Local stand-ins for what OCI provides: an identity, the Generative AI endpoint, the Fn agent.

Used by `make run`, the tests and the benchmarks; never imported by the function at run time and
kept out of the image by .dockerignore.
"""
