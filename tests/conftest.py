"""Shared test settings: quiet TensorFlow, CPU only, deterministic seeds."""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

# `recipe_helpers` (load a recipe script, read its history) is shared by the e2e and workflow tests;
# pytest runs with --import-mode=importlib, so its folder goes on the path here.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "e2e"))
