"""Make `recipe_helpers` importable by the end-to-end tests (pytest runs with --import-mode=importlib)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
