"""tfseg.inference"""
