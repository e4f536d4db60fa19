"""Closed-loop evaluation of pilots and its reports."""
