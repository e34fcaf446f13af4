"""Source adapters: native gateway logs and provider billing exports -> canonical frames.

Each module reads one kind of source; its docstring says the grain, the units and the quirks.
"""
