"""smelt.backends"""
