"""tfseg.io"""
