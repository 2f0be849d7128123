"""nexios"""
