"""Calls for the simulator: the Call record, hand-written call scripts and their synthesis."""
