"""What ships to the store's edge computer.

Imports nothing of the project outside this package and needs neither physics nor a renderer.
"""
