"""A member's history in words: each line names the project, item, rule or book it came from.

Above every feature, because it reads them all; it writes nothing.
"""
