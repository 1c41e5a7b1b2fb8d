"""smelt.passes"""
