"""tfseg.viz"""
