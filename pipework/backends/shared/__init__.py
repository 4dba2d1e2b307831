"""Libraries several built-in plugins share; none of them is a plugin."""
