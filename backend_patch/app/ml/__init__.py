"""Machine-learning core shared by the local pipeline and the TorchServe handler.

``features``, ``feature_engineering``, ``dataset`` and ``predictions`` depend on numpy only and
are also copied to the top level of the TorchServe archive, so they import each other with a
relative-then-absolute fallback. Nothing is imported here on purpose: importing the package must
stay cheap and must not pull torch into processes that only need the numpy modules.
"""
