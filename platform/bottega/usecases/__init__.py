"""Use cases: each is a package with its simulator, features, model factory and walkthrough.

The platform around them stays generic.
"""
