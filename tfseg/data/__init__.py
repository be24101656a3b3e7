"""tfseg.data"""
