"""Embedded data shipped with the package as ``planner_data`` (see README.md in this folder)."""
