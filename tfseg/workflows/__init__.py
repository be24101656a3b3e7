"""End-to-end workflows: the steps a recipe runs, shared by `recipes/` and the `tfseg` CLI."""
