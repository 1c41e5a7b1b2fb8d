"""smelt.rewrite"""
